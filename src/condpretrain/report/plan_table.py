"""Predicted against measured cost, when the experiment folder holds a ``plan.json``.

``condpretrain plan ... --out OUT`` before ``condpretrain run exp.yaml --out OUT`` leaves
the prediction beside the results: each results row is matched to its plan cell by its
key (target, mode, resolution, budget, method, seed) and every stage's device-hours are
compared, as the row is charged (shared work included) and, in the totals, with shared
work counted once.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from condpretrain.errors import CondPretrainError
from condpretrain.experiment.results import Row, row_key, total_device_hours
from condpretrain.log import get_logger
from condpretrain.plan.record import PLAN_FILE, STAGE_COLUMNS, read_plan
from condpretrain.registry import DOWNSTREAM_TASKS
from condpretrain.report.html import Block, Heading, Paragraph
from condpretrain.report.tables import Table, hours_text, number
from condpretrain.scoring.cost import device_hours

log = get_logger(__name__)

STAGE_LABELS = {"select": "Selection", "pretrain": "Pre-training", "finetune": "Fine-tuning"}


@dataclass(frozen=True)
class Comparison:
    """One stage of one cell (or a total): device-hours predicted and measured."""

    label: str
    stage: str
    predicted: float
    measured: float
    task: str = ""  # the row's task: a downstream task's name, or fine-tuning

    @property
    def ratio(self) -> float | None:
        return self.measured / self.predicted if self.predicted > 0 else None

    @property
    def error(self) -> float | None:
        """(predicted - measured) / measured: positive when the plan over-estimated."""
        return (self.predicted - self.measured) / self.measured if self.measured > 0 else None


def comparisons(plan: dict[str, Any], rows: list[Row]) -> tuple[list[Comparison], list[Row]]:
    """Each stage of each row that has a plan cell, and the rows that have none. A stage
    neither predicted nor measured (a baseline's selection) is left out."""
    cells = {row_key(cell): cell for cell in plan["cells"]}
    found, unplanned = [], []
    for row in rows:
        cell = cells.get(row_key(row))
        if cell is None:
            unplanned.append(row)
            continue
        for stage, column in STAGE_COLUMNS.items():
            predicted, measured = number(cell.get(column)), number(row.get(column))
            if measured is None or predicted is None or (predicted == 0 and measured == 0):
                continue
            found.append(Comparison(str(cell.get("label", "")), stage, predicted, measured,
                                    str(row.get("task") or "")))
    return found, unplanned


def total_comparisons(plan: dict[str, Any], rows: list[Row]) -> list[Comparison]:
    """Per stage, the planned rows' device-hours with shared work counted once: the
    plan's jobs of those cells against ``results.total_device_hours`` of the rows."""
    cells = {row_key(cell): cell for cell in plan["cells"]}
    planned = [r for r in rows if row_key(r) in cells]
    if not planned:
        return []
    seconds = {job["key"]: float(job.get("seconds") or 0.0) for job in plan.get("jobs", [])}
    processes = int(plan.get("processes") or 1)
    measured = total_device_hours(planned)
    totals = []
    for stage in STAGE_COLUMNS:
        keys = {k for r in planned for k in cells[row_key(r)].get("jobs", {}).get(stage, [])}
        predicted = device_hours(sum(seconds.get(k, 0.0) for k in keys), processes)
        if predicted or measured[stage]:
            totals.append(Comparison("all planned rows", stage, predicted, measured[stage]))
    return totals


def median_abs_error(found: list[Comparison]) -> float | None:
    errors = [abs(c.error) for c in found if c.error is not None]
    return statistics.median(errors) if errors else None


def plan_blocks(out: Path, rows: list[Row]) -> list[Block]:
    """The report's section: a table per cell and stage, and the totals; nothing when
    ``out`` holds no plan."""
    path = Path(out) / PLAN_FILE
    try:
        plan = read_plan(path)
    except CondPretrainError as exc:  # a report is not stopped by a stray file
        log.warning("%s", exc)
        return [Heading("Predicted against measured cost"),
                Paragraph(f"Not compared: {exc}")]
    if plan is None:
        return []
    found, unplanned = comparisons(plan, rows)
    heading = Heading("Predicted against measured cost")
    if not found:
        return [heading, Paragraph(f"{PLAN_FILE} names none of the {len(rows)} rows of the "
                                   "results (another grid, or target names that differ).")]
    error = median_abs_error(found)
    intro = (f"{PLAN_FILE}: calibrated on {plan.get('device', '?')} on "
             f"{plan.get('created', '?')}; {len(rows) - len(unplanned)} of {len(rows)} rows "
             f"planned. Median absolute error over cells and stages: "
             f"{_percent(error)}.")
    return [heading, Paragraph(intro), _cells_table(found),
            _table("Predicted against measured device-hours, shared work counted once",
                   "Total", total_comparisons(plan, rows),
                   "the planned rows' work, each scoring, cached model and run once.")]


def _cells_table(found: list[Comparison]) -> Table:
    return _table("Predicted against measured device-hours per cell", "Cell", found,
                  "each row is charged what it needed, shared work included, as results.csv "
                  "charges it; error = (predicted - measured) / measured.")


def _table(title: str, first: str, found: list[Comparison], note: str) -> Table:
    rows = [[c.label, stage_label(c), hours_text(c.predicted), hours_text(c.measured),
             f"{c.ratio:.2f}" if c.ratio is not None else "-", _percent(c.error, signed=True)]
            for c in found]
    return Table(title, [first, "Stage", "Predicted (device-h)", "Measured (device-h)",
                         "Measured / predicted", "Error"], rows, note=note)


def stage_label(found: Comparison) -> str:
    """The stage as the report names it; a downstream target's training by its task
    ("VOC detection"), which results.csv charges to the fine-tuning columns."""
    if found.stage == "finetune" and found.task in DOWNSTREAM_TASKS:
        return str(DOWNSTREAM_TASKS[found.task].label)
    return STAGE_LABELS[found.stage]


def _percent(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value * 100:+.0f} %" if signed else f"{value * 100:.0f} %"


__all__ = ["Comparison", "comparisons", "total_comparisons", "median_abs_error",
           "stage_label", "plan_blocks"]
