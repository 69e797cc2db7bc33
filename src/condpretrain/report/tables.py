"""Results rows -> tables in the layout of the paper's Table 2.

One table per (pre-training mode, resolution): rows are budget x method (the 0 % and
100 % baselines first), columns are the targets, then the pre-training cost and,
apart from it, the selection cost, both in device-hours. Cells are mean +- std over
seeds; the best selection method of each budget is marked in every column.

Costs are per method as in the paper: each row is charged what it needed, shared work
included (a budget its method's scoring, a method the target-trained model it used, a
target the entire-pool pre-training). The totals table counts shared work once.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from condpretrain.experiment.results import (
    BASELINES,
    DOWNSTREAM_METRICS,
    ENTIRE_POOL,
    HEADLINE_METRICS,
    RANDOM_INIT,
    RESULT_COLUMNS,
    budget_label,
    method_label,
    method_order,
    total_device_hours,
)

# Downstream metrics a results table may carry besides classification accuracy: the
# columns of detection / segmentation targets (results.DOWNSTREAM_METRICS), or the same
# names in columns added to the table by hand (``voc_ap50``).
EXTRA_METRIC_NAMES = {
    "ap50": "Detection AP50", "ap": "Detection AP", "ap75": "Detection AP75",
    "miou": "Segmentation mIoU", "macc": "Segmentation mAcc", "allacc": "Segmentation allAcc",
}


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    bold: set[tuple[int, int]] = field(default_factory=set)  # (row, column) to mark
    note: str = ""
    text_columns: int = 2  # leading columns of labels; the rest are numbers, right-aligned


@dataclass
class Stat:
    mean: float
    std: float
    n: int

    def text(self, digits: int = 2) -> str:
        if self.n > 1:
            return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"
        return f"{self.mean:.{digits}f}"


def number(value: str | float | None) -> float | None:
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def headline_metric(row: dict[str, str]) -> str | None:
    """The column a row is compared and plotted by: its task's headline, the first of
    ``HEADLINE_METRICS`` it has (top-1 of a fine-tuning, AP50 of a detection, mIoU of a
    segmentation). One target has one task, and every comparison holds the target fixed."""
    return next((m for m in HEADLINE_METRICS if number(row.get(m)) is not None), None)


def stat(values: Iterable[float | None]) -> Stat | None:
    """Mean and sample standard deviation (ddof=1) of the values that are numbers."""
    xs = [v for v in values if v is not None]
    if not xs:
        return None
    mean = sum(xs) / len(xs)
    var = sum((x - mean) ** 2 for x in xs) / (len(xs) - 1) if len(xs) > 1 else 0.0
    return Stat(mean, math.sqrt(var), len(xs))


def hours_text(hours: float | None) -> str:
    if hours is None:
        return "-"
    if hours == 0:
        return "0"
    if hours >= 10:
        return f"{hours:.0f}"
    if hours >= 1:
        return f"{hours:.1f}"
    # Demo-sized runs cost thousandths of an hour: two significant digits, no exponent.
    return np.format_float_positional(hours, precision=2, unique=True, fractional=False, trim="-")


def seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.1f}"


def targets_of(rows: list[dict[str, str]]) -> list[str]:
    return list(dict.fromkeys(r["target"] for r in rows))


def groups_of(rows: list[dict[str, str]]) -> list[tuple[str, int]]:
    """(mode, resolution) of every table: modes as met, resolutions high to low as in the paper."""
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    groups = {(r["mode"], int(r["resolution"])) for r in rows if r["method"] != RANDOM_INIT}
    if not groups:  # only random-init rows: one table per mode
        groups = {(m, 0) for m in modes}
    return sorted(groups, key=lambda g: (modes.index(g[0]), -g[1]))


def row_order(rows: list[dict[str, str]]) -> list[tuple[float, str]]:
    """(budget, method) rows: random init, entire pool, then each budget in the paper's order."""
    present = {(float(r["budget"]), r["method"]) for r in rows}
    known = {m: i for i, m in enumerate(method_order())}
    baselines = [(0.0, RANDOM_INIT), (1.0, ENTIRE_POOL)]
    rest = sorted((p for p in present if p not in baselines),
                  key=lambda p: (p[0], known.get(p[1], len(known)), p[1]))
    return [b for b in baselines if b in present] + rest


def table2(rows: list[dict[str, str]], metric: str = "top1", title: str = "Top-1 accuracy (%)"
           ) -> list[Table]:
    """The paper's Table 2 for ``metric``: one table per (mode, resolution)."""
    rows = [r for r in rows if number(r.get(metric)) is not None]
    if not rows:
        return []
    targets = targets_of(rows)
    tables = []
    for mode, res in groups_of(rows):
        in_group = [r for r in rows if r["mode"] == mode
                    and (r["method"] == RANDOM_INIT or int(r["resolution"]) == res)]
        tables.append(_one_table(in_group, targets, metric,
                                 f"{title}: {mode} pre-training at {res}x{res}" if res
                                 else f"{title}: {mode}"))
    return tables


def _one_table(rows: list[dict[str, str]], targets: list[str], metric: str, title: str
               ) -> Table:
    cells: dict[tuple[float, str], list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        cells[(float(r["budget"]), r["method"])].append(r)
    header = ["Budget", "Method", *targets, "Pre-train cost (device-h)", "Selection (device-h)"]
    table = Table(title, header, [], note=(
        "mean ± std over seeds; **bold**: best selection method of its budget per target; "
        "costs are means over targets and seeds, selection counted apart from pre-training; "
        "each row is charged what it needed, shared models included (counted once in the "
        "totals)."))
    means: dict[tuple[float, int], list[tuple[str, int]]] = defaultdict(list)
    last_budget = None
    for i, (budget, method) in enumerate(row_order(rows)):
        group = cells[(budget, method)]
        line = [budget_label(budget) if budget != last_budget else "", method_label(method)]
        last_budget = budget
        for j, target in enumerate(targets):
            s = stat(number(r[metric]) for r in group if r["target"] == target)
            line.append(s.text() if s else "-")
            if s and method not in BASELINES:
                means[(budget, j)].append((f"{s.mean:.2f}", i))
        pre = stat(number(r.get("pretrain_device_hours")) for r in group)
        sel = stat(number(r.get("select_device_hours")) for r in group)
        line += [hours_text(pre.mean if pre else None),
                 hours_text(sel.mean if sel else (0.0 if method in BASELINES
                                                  else None))]
        table.rows.append(line)
    # Ties (as shown, to two decimals) are all marked; a lone method is not "best" of anything.
    for (_, j), found in means.items():
        top = max(float(m) for m, _ in found)
        if len(found) > 1:
            table.bold |= {(i, 2 + j) for m, i in found if float(m) == top}
    return table


def timing_table(rows: list[dict[str, str]]) -> Table:
    """Wall seconds of selection, pre-training and fine-tuning, kept apart, per row of Table 2."""
    header = ["Mode", "Resolution", "Budget", "Method", "Selection (s)", "Pre-training (s)",
              "Fine-tuning (s)", "Pre-train images", "Pre-train PFLOPs"]
    table = Table("Where the time goes (mean over targets and seeds)", header, [], text_columns=4,
                  note="selection = scoring (which every budget of a method shares) + the "
                       "training of the cached models it used (which several methods share) "
                       "+ picking the budget; each row is charged all of it, the totals "
                       "table counts shared work once.")
    for mode, res in groups_of(rows):
        in_group = [r for r in rows if r["mode"] == mode
                    and (r["method"] == RANDOM_INIT or int(r["resolution"]) == res)]
        for budget, method in row_order(in_group):
            group = [r for r in in_group if float(r["budget"]) == budget and r["method"] == method]

            def mean(column: str, group: list[dict[str, str]] = group) -> float | None:
                s = stat(number(r.get(column)) for r in group)
                return s.mean if s else None

            flops = mean("pretrain_flops")
            images = mean("pretrain_images")
            table.rows.append([mode, f"{res}" if res else "-", budget_label(budget),
                               method_label(method), seconds_text(mean("select_seconds")),
                               seconds_text(mean("pretrain_seconds")),
                               seconds_text(mean("finetune_seconds")),
                               f"{images:.0f}" if images is not None else "-",
                               f"{flops / 1e15:.3g}" if flops is not None else "-"])
    return table


def total_cost_table(rows: list[dict[str, str]]) -> Table:
    """The experiment's device-hours by stage: shared work counted once, and, beside it,
    the sum of what the rows are charged (the difference is what sharing saved)."""
    once, charged = total_device_hours(rows), total_device_hours(rows, once=False)
    stages = (("select", "Selection"), ("pretrain", "Pre-training"), ("finetune", "Fine-tuning"),
              ("total", "Total"))
    return Table("Total cost of the experiment (device-hours)",
                 ["Stage", "Counted once", "Sum of the rows' charges"],
                 [[label, hours_text(once[key]), hours_text(charged[key])]
                  for key, label in stages],
                 text_columns=1,
                 note="counted once: a method's scoring, a cached model (e.g. the "
                      "target-trained model of clustering and active learning) and the "
                      "entire-pool pre-training serve several rows and count once here.")


def extra_metrics(rows: list[dict[str, str]]) -> list[tuple[str, str]]:
    """(column, title) of downstream metrics present beyond classification accuracy."""
    found = []
    columns = [*DOWNSTREAM_METRICS,
               *dict.fromkeys(k for r in rows for k in r if k not in RESULT_COLUMNS)]
    for column in columns:
        if not any(number(r.get(column)) is not None for r in rows):
            continue
        short = column.lower().split("_", 1)[-1] if "_" in column else column.lower()
        title = EXTRA_METRIC_NAMES.get(short, EXTRA_METRIC_NAMES.get(column.lower(), column))
        # a detection / segmentation target's own column is percent (runner.target_scores)
        found.append((column, f"{title} (%)" if column in DOWNSTREAM_METRICS else title))
    return found


def all_tables(rows: list[dict[str, str]]) -> list[Table]:
    tables = table2(rows, "top1", "Top-1 accuracy (%)")
    for column, title in extra_metrics(rows):
        tables += table2(rows, column, title)
    return tables
