"""``OUT/plan.json``: what ``condpretrain plan`` predicted, as the report reads it back.

One entry per cell, keyed like a row of ``results.csv`` (``target, mode, resolution,
budget, method, seed``, as text: ``results.row_key`` reads a cell's key as a row's) and
holding the device-hours its row will be charged, under the same names as the results
columns (``select_device_hours``...), so predicted and measured compare column by column.
This module only names and reads the file: it stays light, for the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from condpretrain import atomic
from condpretrain.errors import CondPretrainError

PLAN_FILE = "plan.json"
FORMAT = 1
# stage -> the results.csv column (and plan.json cell field) of its device-hours
STAGE_COLUMNS = {"select": "select_device_hours", "pretrain": "pretrain_device_hours",
                 "finetune": "finetune_device_hours"}


def write_plan(path: str | Path, plan: dict[str, Any]) -> None:
    atomic.write_json(path, {"format": FORMAT, **plan})


def read_plan(path: str | Path) -> dict[str, Any] | None:
    """The plan in ``path``; None when there is none. A file that is not a plan of
    this tool is a one-line error naming it."""
    path = Path(path)
    if not path.exists():
        return None
    data = atomic.read_json(path, default=None)
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list) \
            or not all(isinstance(c, dict) for c in data["cells"]):
        raise CondPretrainError(f"{path}: not a plan written by `condpretrain plan` "
                                "(no list of cells); move it away or run the plan again")
    if data.get("format") != FORMAT:
        raise CondPretrainError(f"{path}: plan format {data.get('format')!r}, this version "
                                f"reads {FORMAT}; run `condpretrain plan` again")
    return data


__all__ = ["PLAN_FILE", "FORMAT", "STAGE_COLUMNS", "write_plan", "read_plan"]
