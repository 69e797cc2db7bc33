"""The Findings of an experiment, computed from its results table (and, for (f), its
subsets): paired comparisons, never numbers written in advance.

(a) each subset cell vs random init; (b) each conditional method vs a random subset of
the same budget and resolution; (c) the largest vs the smallest budget; (d) each subset
cell vs the entire pool, with the cost ratio; (e) each lower resolution vs the highest,
with the cost ratio; (f) which parts of the pool each method drew from.

Every comparison holds target, pre-training mode and whatever the finding does not vary
fixed, and pairs on seed (:mod:`condpretrain.report.paired`). Sentences and tables are
built from these by :mod:`condpretrain.report.findings_text`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from condpretrain.experiment.results import (
    BASELINES,
    ENTIRE_POOL,
    HEADLINE_METRICS,
    RANDOM_INIT,
    RANDOM_SUBSET,
)
from condpretrain.report.composition import TargetComposition, compositions
from condpretrain.report.paired import Paired, mean_ratio, paired_difference, seed_order
from condpretrain.report.tables import headline_metric, number


class CellKey(NamedTuple):
    target: str
    mode: str
    resolution: int
    budget: float
    method: str


Cells = dict[CellKey, dict[str, dict[str, str]]]  # cell -> seed -> row


@dataclass(frozen=True)
class Comparison:
    """``subject`` minus ``baseline`` (points of the target's headline metric), paired on
    seed."""

    subject: CellKey
    baseline: CellKey
    paired: Paired
    cost_ratio: float | None = None


@dataclass
class Finding:
    letter: str
    comparisons: list[Comparison] = field(default_factory=list)
    missing: str = ""  # why the finding could not be computed; "" when it was
    unpaired: int = 0  # cells that had a counterpart but no seed in common with it


@dataclass
class Findings:
    a: Finding
    b: Finding
    c: Finding
    d: Finding
    e: Finding
    f: list[TargetComposition]
    f_missing: str = ""
    runs: int = 0
    seeds: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)  # the headline metrics compared

    def comparisons(self) -> list[Finding]:
        return [self.a, self.b, self.c, self.d, self.e]


def compute_findings(rows: list[dict[str, str]], out: Path | None = None) -> Findings:
    """Every finding of ``rows``; (f) reads the subsets under ``out`` when given."""
    cells = cells_of(rows)
    subsets = compositions(out, rows) if out is not None else []
    return Findings(
        a=versus_random_init(cells), b=versus_random_subset(cells), c=budgets(cells),
        d=versus_entire_pool(cells), e=resolutions(cells), f=subsets,
        f_missing="" if subsets else "no complete selection folders (subset.csv with its "
                                     "selection.json) named by the results",
        runs=len(rows), seeds=sorted({r["seed"] for r in rows}, key=seed_order),
        metrics=[m for m in HEADLINE_METRICS if any(headline_metric(r) == m for r in rows)])


def headline(cell: dict[str, dict[str, str]]) -> dict[str, float]:
    """seed -> the headline score of the cell's run with that seed."""
    return {seed: number(r[metric]) for seed, r in cell.items()  # type: ignore[misc]
            if (metric := headline_metric(r)) is not None}


def cells_of(rows: list[dict[str, str]]) -> Cells:
    """Rows with a headline score, by cell and seed."""
    cells: Cells = defaultdict(dict)
    for r in rows:
        if headline_metric(r) is None:
            continue
        key = CellKey(r["target"], r["mode"], int(float(r["resolution"] or 0)),
                      float(r["budget"]), r["method"])
        cells[key][r["seed"]] = r
    return dict(cells)


def column(cell: dict[str, dict[str, str]], name: str) -> dict[str, float]:
    """seed -> the column's value, for the seeds where it is a number."""
    return {seed: v for seed, r in cell.items() if (v := number(r.get(name))) is not None}


def subset_keys(cells: Cells) -> list[CellKey]:
    return [k for k in cells if k.method not in BASELINES]


def compare(cells: Cells, subject: CellKey, baseline: CellKey) -> Comparison | None:
    paired = paired_difference(headline(cells[subject]), headline(cells[baseline]))
    return Comparison(subject, baseline, paired) if paired else None


def _collect(letter: str, cells: Cells, pairs: list[tuple[CellKey, CellKey]]) -> Finding:
    finding = Finding(letter)
    for subject, baseline in pairs:
        comparison = compare(cells, subject, baseline)
        if comparison:
            finding.comparisons.append(comparison)
        else:
            finding.unpaired += 1
    return finding


def versus_random_init(cells: Cells) -> Finding:
    """(a) Pre-training on any subset vs no pre-training: same target, mode and seed."""
    inits = {(k.target, k.mode): k for k in cells if k.method == RANDOM_INIT}
    subsets = subset_keys(cells)
    if not inits or not subsets:
        return Finding("a", missing="no random-init rows" if not inits else "no subset rows")
    finding = _collect("a", cells, [(k, inits[(k.target, k.mode)]) for k in subsets
                                    if (k.target, k.mode) in inits])
    finding.unpaired += sum((k.target, k.mode) not in inits for k in subsets)
    if not finding.comparisons:
        finding.missing = "no random-init rows of the subsets' targets, modes and seeds"
    return finding


def versus_random_subset(cells: Cells) -> Finding:
    """(b) Each conditional method vs the random subset of its budget and resolution."""
    conditional = [k for k in subset_keys(cells) if k.method != RANDOM_SUBSET]
    if not any(k.method == RANDOM_SUBSET for k in cells) or not conditional:
        return Finding("b", missing="no random-subset rows" if conditional
                       else "no conditional method rows")
    pairs = [(k, k._replace(method=RANDOM_SUBSET)) for k in conditional]
    finding = _collect("b", cells, [(k, b) for k, b in pairs if b in cells])
    finding.unpaired += sum(b not in cells for _, b in pairs)
    if not finding.comparisons:
        finding.missing = "no random subset of the conditional methods' budgets and resolutions"
    return finding


def budgets(cells: Cells) -> Finding:
    """(c) The largest vs the smallest budget of each method (same resolution)."""
    by_method: dict[CellKey, list[float]] = defaultdict(list)
    for k in subset_keys(cells):
        by_method[k._replace(budget=0.0)].append(k.budget)
    pairs = [(k._replace(budget=max(b)), k._replace(budget=min(b)))
             for k, b in by_method.items() if len(set(b)) > 1]
    if not pairs:
        return Finding("c", missing="one budget only" if by_method else "no subset rows")
    finding = _collect("c", cells, pairs)
    if not finding.comparisons:
        finding.missing = "no seed shared by two budgets of a method"
    return finding


def versus_entire_pool(cells: Cells) -> Finding:
    """(d) Each subset cell vs the entire pool at its resolution; cost ratio: selection +
    pre-training of the subset over pre-training of the entire pool."""
    subsets = subset_keys(cells)
    if not any(k.method == ENTIRE_POOL for k in cells) or not subsets:
        return Finding("d", missing="no entire-pool rows" if subsets else "no subset rows")
    pairs = [(k, k._replace(budget=1.0, method=ENTIRE_POOL)) for k in subsets]
    finding = _collect("d", cells, [(k, b) for k, b in pairs if b in cells])
    finding.unpaired += sum(b not in cells for _, b in pairs)
    finding.comparisons = [_with_cost(c, subset_cost(cells[c.subject]),
                                      column(cells[c.baseline], "pretrain_device_hours"))
                           for c in finding.comparisons]
    if not finding.comparisons:
        finding.missing = "no entire-pool rows at the subsets' resolutions and seeds"
    return finding


def subset_cost(cell: dict[str, dict[str, str]]) -> dict[str, float]:
    """seed -> selection + pre-training device-hours; a row without a selection cost
    (the random subset may record none) counts it as 0, one without pre-training is left out."""
    select = column(cell, "select_device_hours")
    return {seed: hours + select.get(seed, 0.0)
            for seed, hours in column(cell, "pretrain_device_hours").items()}


def resolutions(cells: Cells) -> Finding:
    """(e) Each lower resolution vs the highest, same method and budget; cost ratio:
    pre-training device-hours at the low over the full resolution."""
    by_cell: dict[CellKey, list[int]] = defaultdict(list)
    for k in cells:
        if k.method != RANDOM_INIT:
            by_cell[k._replace(resolution=0)].append(k.resolution)
    pairs = [(k._replace(resolution=low), k._replace(resolution=max(res)))
             for k, res in by_cell.items() for low in sorted(set(res), reverse=True)
             if low != max(res)]
    if not pairs:
        return Finding("e", missing="one resolution only" if by_cell else "no pre-trained rows")
    finding = _collect("e", cells, pairs)
    finding.comparisons = [_with_cost(c, column(cells[c.subject], "pretrain_device_hours"),
                                      column(cells[c.baseline], "pretrain_device_hours"))
                           for c in finding.comparisons]
    if not finding.comparisons:
        finding.missing = "no seed shared by two resolutions of a cell"
    return finding


def _with_cost(comparison: Comparison, subject: dict[str, float],
               baseline: dict[str, float]) -> Comparison:
    ratio = mean_ratio(subject, baseline, comparison.paired.seeds)
    return Comparison(comparison.subject, comparison.baseline, comparison.paired, ratio)


__all__ = ["CellKey", "Comparison", "Finding", "Findings", "compute_findings", "cells_of",
           "versus_random_init", "versus_random_subset", "budgets", "versus_entire_pool",
           "resolutions", "subset_cost", "headline"]
