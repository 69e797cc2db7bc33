"""The results table (``OUT/results.csv``): its columns, reading and writing, and how
its ``budget`` and ``method`` columns are shown.

This is the one module of the experiment that the report reads, so it holds what both
need and nothing that runs: the two baselines (which are rows of the table, not
selection methods) and the labels of every method.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from condpretrain import atomic
from condpretrain.config.select import fused_methods, method_and_features
from condpretrain.errors import CondPretrainError
from condpretrain.registry import SCORERS

RESULTS_FILE = "results.csv"

# The two baselines of Table 2: nothing pre-trained (0 %) and the whole pool (100 %).
RANDOM_INIT = "random-init"
ENTIRE_POOL = "entire-pool"
BASELINES = (RANDOM_INIT, ENTIRE_POOL)
BASELINE_LABELS = {RANDOM_INIT: "Random Init.", ENTIRE_POOL: "Entire Dataset"}
# The selection method that every conditional one is measured against (the report's Findings).
RANDOM_SUBSET = "random"

# Row identity: one row per cell and seed. subset_for: the mixed target whose one subset
# the row pre-trained on (fine-tuned on ``target``, one of its parts); empty otherwise.
# Added later, so a table written before has no such column, and reads it as empty.
SUBSET_FOR = "subset_for"
KEY_COLUMNS = ("target", "mode", "resolution", "budget", "method", "seed", SUBSET_FOR)
REQUIRED_COLUMNS = tuple(c for c in KEY_COLUMNS if c != SUBSET_FOR)
# How the report groups a row's method when its subset served a mix: METHOD@@MIX (a
# single '@' names a method's features, knn@classic).
SHARED_MARK = "@@"
# The scores of each downstream task (its ``metrics``, lower case), its headline first.
DOWNSTREAM_METRICS = ("ap50", "ap", "ap75", "miou", "macc", "allacc")
# The metric that findings compare, by the first that a row has: each task's headline.
HEADLINE_METRICS = ("top1", "ap50", "miou")
RESULT_COLUMNS = (
    *KEY_COLUMNS,
    # task: the command that trained on the target (finetune, detect, segment; empty in
    # tables written before downstream targets, which were all fine-tuned)
    "task", "arch", "selected", "pool_size",
    # percent, as result.json has them; top1/top5: the last epoch (the headline);
    # best_test_top1: the epoch best on the test split itself (optimistic, never reported)
    "top1", "top5", "best_test_top1",
    # a downstream target's scores instead, in percent (detect, segment)
    *DOWNSTREAM_METRICS,
    # Costs are what each cell needed, shared work included (the paper's cost column):
    # select_shared is a JSON {work: device-hours} of the parts of select_device_hours
    # that other cells share, so totals can count them once (total_device_hours).
    "select_seconds", "select_device_hours", "select_shared",
    "pretrain_seconds", "pretrain_device_hours", "pretrain_images", "pretrain_flops",
    "finetune_seconds", "finetune_device_hours",
    "select_dir", "pretrain_dir", "finetune_dir", "finished_at",
)

Row = dict[str, str]


def method_label(method: str) -> str:
    """How tables and figures show a ``method`` value: a baseline's or the scorer's
    label; a fusion ``fuse:a,b`` as ``Fuse (A + B)``, its parts' labels."""
    method, mark, mix = method.partition(SHARED_MARK)
    if mark:
        return f"{method_label(method)}, subset for {mix}"
    parts = fused_methods(method)
    if parts:
        return f"Fuse ({' + '.join(method_label(part) for part in parts)})"
    name, features = method_and_features(method)
    if features is not None:
        return f"{SCORERS.label(name)} on {features}"
    return BASELINE_LABELS.get(method) or SCORERS.label(method)


def as_shown(rows: list[Row]) -> list[Row]:
    """The rows as the report groups them (by ``method``): a subset shared by a mix of
    targets is a method of its own, ``METHOD@MIX``, beside the target's own subset."""
    return [{**row, "method": f"{row['method']}{SHARED_MARK}{row[SUBSET_FOR]}"}
            if row.get(SUBSET_FOR) else row for row in rows]


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
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise CondPretrainError(f"{path}: not a results table (missing columns: "
                                        f"{', '.join(missing)})")
            # a column added later (subset_for) reads as empty in a table written before
            return [{**dict.fromkeys(KEY_COLUMNS, ""),
                     **{k: v or "" for k, v in row.items() if k is not None}} for row in reader]
    except (UnicodeDecodeError, csv.Error) as exc:  # binary, or NUL bytes in it
        reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
        raise CondPretrainError(f"{path}: not a results table ({reason})") from None


def shared_work(row: Row) -> dict[str, float]:
    """``select_shared`` of a row: {work: device-hours}; nothing for older tables."""
    try:
        shared = json.loads(row.get("select_shared") or "{}")
    except ValueError:
        return {}
    if not isinstance(shared, dict):
        return {}
    return {str(k): hours for k, v in shared.items() if (hours := _hours(v)) is not None}


def total_device_hours(rows: list[Row], once: bool = True) -> dict[str, float]:
    """Device-hours of a set of rows by stage (select, pretrain, finetune, total).

    ``once``: the experiment's real cost, every piece of shared work counted once: a
    method's scoring (every budget is charged it), a cached model (every method that
    used it is charged it), a pre-training or fine-tuning run that several rows name
    (the entire pool serves every target). Otherwise the sum of what each row is charged.
    """
    select, shared = 0.0, {}
    for row in rows:
        parts = shared_work(row) if once else {}
        select += (_hours(row.get("select_device_hours")) or 0.0) - sum(parts.values())
        for work, hours in parts.items():
            shared.setdefault(work, hours)
    totals = {"select": select + sum(shared.values()),
              "pretrain": _stage_total(rows, "pretrain", once),
              "finetune": _stage_total(rows, "finetune", once)}
    return {**totals, "total": sum(totals.values())}


def _stage_total(rows: list[Row], stage: str, once: bool) -> float:
    """A stage's device-hours, a run that several rows name (its folder) counted once."""
    runs: dict[str, float] = {}
    for i, row in enumerate(rows):
        folder = row.get(f"{stage}_dir") if once else ""
        runs.setdefault(folder or f"row {i}", _hours(row.get(f"{stage}_device_hours")) or 0.0)
    return sum(runs.values())


def _hours(value: object) -> float | None:
    try:
        hours = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return hours if math.isfinite(hours) else None


def write_results(path: str | Path, rows: list[Row]) -> None:
    """Known columns first, then any extra ones (e.g. detection metrics added later)."""
    extra = sorted({k for r in rows for k in r} - set(RESULT_COLUMNS))
    columns = [*RESULT_COLUMNS, *extra]
    with atomic.atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


__all__ = [
    "RESULTS_FILE", "RANDOM_INIT", "ENTIRE_POOL", "BASELINES", "BASELINE_LABELS", "RANDOM_SUBSET",
    "KEY_COLUMNS", "REQUIRED_COLUMNS", "SUBSET_FOR", "DOWNSTREAM_METRICS", "HEADLINE_METRICS",
    "SHARED_MARK", "RESULT_COLUMNS", "Row",
    "method_label", "as_shown", "method_order", "budget_key",
    "budget_label", "row_key", "cell_text", "read_results", "write_results", "shared_work",
    "total_device_hours",
]
