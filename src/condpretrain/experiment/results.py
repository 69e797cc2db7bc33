"""The results table (``OUT/results.csv``): its columns, reading and writing, and how
its ``budget`` and ``method`` columns are shown.

This is the one module of the experiment that the report reads, so it holds what both
need and nothing that runs: the two baselines (which are rows of the table, not
selection methods) and the labels of every method.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from condpretrain import atomic
from condpretrain.errors import CondPretrainError
from condpretrain.registry import SCORERS

RESULTS_FILE = "results.csv"

# The two baselines of Table 2: nothing pre-trained (0 %) and the whole pool (100 %).
RANDOM_INIT = "random-init"
ENTIRE_POOL = "entire-pool"
BASELINES = (RANDOM_INIT, ENTIRE_POOL)
BASELINE_LABELS = {RANDOM_INIT: "Random Init.", ENTIRE_POOL: "Entire Dataset"}

# Row identity: one row per cell and seed.
KEY_COLUMNS = ("target", "mode", "resolution", "budget", "method", "seed")
RESULT_COLUMNS = (
    *KEY_COLUMNS,
    "arch", "selected", "pool_size",
    "top1", "top5", "best_top1",  # percent, as result.json has them
    "select_seconds", "select_device_hours",
    "pretrain_seconds", "pretrain_device_hours", "pretrain_images", "pretrain_flops",
    "finetune_seconds", "finetune_device_hours",
    "select_dir", "pretrain_dir", "finetune_dir", "finished_at",
)

Row = dict[str, str]


def method_label(method: str) -> str:
    """How tables and figures show a ``method`` value: a baseline's or the scorer's label."""
    return BASELINE_LABELS.get(method) or SCORERS.label(method)


def method_order() -> list[str]:
    """The paper's row order: the baselines, then the selection methods in registry order."""
    return [*BASELINES, *SCORERS.names()]


def budget_key(budget: float) -> str:
    """A budget as the table (and folder names) write it: 0.06 -> '0.06'."""
    return f"{float(budget):g}"


def budget_label(budget: float) -> str:
    """A budget as reports show it: 0.06 -> '6%'."""
    return f"{float(budget) * 100:g}%"


def row_key(row: Row) -> tuple[str, ...]:
    return tuple(row.get(k, "") for k in KEY_COLUMNS)


def cell_text(value: Any) -> str:
    """One value as the table stores it (floats to six significant digits)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def read_results(path: str | Path) -> list[Row]:
    """The rows of a results table; none when the file does not exist yet."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in KEY_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CondPretrainError(f"{path}: not a results table (missing columns: "
                                    f"{', '.join(missing)})")
        return [{k: v or "" for k, v in row.items() if k is not None} for row in reader]


def write_results(path: str | Path, rows: list[Row]) -> None:
    """Known columns first, then any extra ones (e.g. detection metrics added later)."""
    extra = sorted({k for r in rows for k in r} - set(RESULT_COLUMNS))
    columns = [*RESULT_COLUMNS, *extra]
    with atomic.atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


__all__ = [
    "RESULTS_FILE", "RANDOM_INIT", "ENTIRE_POOL", "BASELINES", "BASELINE_LABELS",
    "KEY_COLUMNS", "RESULT_COLUMNS", "Row", "method_label", "method_order", "budget_key",
    "budget_label", "row_key", "cell_text", "read_results", "write_results",
]
