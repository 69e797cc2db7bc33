"""The report of an experiment: Table-2 tables, cost plot, what each method picked.

Plotting libraries load only when a report is written, so importing the API stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from condpretrain.report.build import ReportResult


def report(out: str | Path) -> ReportResult:
    """Write ``report.md``, ``report.html`` and ``figures/`` of an experiment folder."""
    from condpretrain.report.build import write_report

    return write_report(out)


__all__ = ["report"]
