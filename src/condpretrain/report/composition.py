"""Finding (f): which parts of the pool each method drew its subset from.

A pool's parts are its sources when there are several (the ``pool`` column), else the
class folders of its one source (the ``label`` column). Each part's share of a subset is
set beside its share of the whole pool: their ratio (the enrichment) says whether a
method favoured that part or merely took it as often as a random draw would.

The pool's composition is read from what the selection recorded: the per-source counts
of ``selection.json`` and the full listing ``pool.csv``. Only when neither is there is it
estimated from the random method's subset, and the result says so.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from condpretrain import atomic
from condpretrain.experiment.results import RANDOM_SUBSET
from condpretrain.report.subsets import lowest_seed_subsets, read_subset

BY_SOURCE, BY_CLASS = "pool source", "class folder"
FROM_SELECTION_JSON = "the per-source counts in selection.json"
FROM_POOL_CSV = "the pool's listing (pool.csv)"
FROM_RANDOM = ("estimated from the random method's subset (the pool's composition is not "
               "recorded)")


@dataclass(frozen=True)
class PartShare:
    part: str
    picked: int
    share: float  # of the subset
    pool_share: float | None  # of the whole pool; None when unknown

    @property
    def enrichment(self) -> float | None:
        """Share of the subset over share of the pool: 1 is what a random draw gives."""
        if not self.pool_share:
            return None
        return self.share / self.pool_share


@dataclass
class MethodParts:
    method: str
    seed: int
    picked: int
    parts: list[PartShare]  # most picked first


@dataclass
class TargetComposition:
    target: str
    budget: float
    by: str  # BY_SOURCE or BY_CLASS
    pool_source: str  # where the pool shares come from; "" when unknown
    methods: list[MethodParts] = field(default_factory=list)
    note: str = ""  # why nothing could be broken down


def compositions(out: Path, rows: list[dict[str, str]]) -> list[TargetComposition]:
    """Per target, at its largest budget, the parts of every method's subset."""
    found = lowest_seed_subsets(out, rows)
    targets = list(dict.fromkeys(t for t, _, _ in found))
    result = []
    for target in targets:
        budgets = {b for t, b, _ in found if t == target}
        largest = max(budgets, key=float)
        picked = {m: (seed, path) for (t, b, m), (seed, path) in found.items()
                  if t == target and b == largest}
        result.append(_target_composition(target, float(largest), picked))
    return result


def _target_composition(target: str, budget: float,
                        subsets: dict[str, tuple[int, Path]]) -> TargetComposition:
    rows = {m: read_subset(path) for m, (_, path) in subsets.items()}
    metas = {m: _selection_meta(path) for m, (_, path) in subsets.items()}
    by_source = any(len(meta.get("pools") or {}) > 1 for meta in metas.values()) or any(
        len({r.get("pool", "") for r in picked}) > 1 for picked in rows.values())
    by = BY_SOURCE if by_source else BY_CLASS
    if by == BY_CLASS and not any(r.get("label") for picked in rows.values() for r in picked):
        return TargetComposition(target, budget, by, "", note=(
            f"{target}: the pool has one source and no class folders, so it has no parts "
            "to tell apart"))
    pool, source = _pool_counts(by, subsets, metas, rows)
    total = sum(pool.values()) if pool else 0
    composition = TargetComposition(target, budget, by, source if pool else "")
    for method, picked in rows.items():
        if not picked:
            continue
        counts = Counter(_part(r, by) for r in picked)
        parts = [PartShare(part, n, n / len(picked),
                           pool.get(part, 0) / total if pool and total else None)
                 for part, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        composition.methods.append(MethodParts(method, subsets[method][0], len(picked), parts))
    return composition


def _part(row: dict[str, str], by: str) -> str:
    name = row.get("pool", "") if by == BY_SOURCE else row.get("label", "")
    return name or "(none)"


def _selection_meta(subset_csv: Path) -> dict:
    meta = atomic.read_json(subset_csv.parent / "selection.json", default={})
    return meta if isinstance(meta, dict) else {}


def _pool_counts(by: str, subsets: dict[str, tuple[int, Path]], metas: dict[str, dict],
                 rows: dict[str, list[dict[str, str]]]) -> tuple[dict[str, int], str]:
    """The count of every part in the whole pool, and where it was found."""
    if by == BY_SOURCE:
        for meta in metas.values():
            pools = meta.get("pools")
            if isinstance(pools, dict) and pools:
                return {str(k): int(v) for k, v in pools.items()}, FROM_SELECTION_JSON
    else:
        for method, (_, path) in subsets.items():
            listing = _pool_listing(path.parent, metas[method])
            if listing is not None:
                return _count_column(listing, "label"), FROM_POOL_CSV
    if rows.get(RANDOM_SUBSET):
        return Counter(_part(r, by) for r in rows[RANDOM_SUBSET]), FROM_RANDOM
    return {}, ""


def _pool_listing(folder: Path, meta: dict) -> Path | None:
    """The selection's pool.csv, else that of the scores it was re-selected from (when
    recorded as an absolute path: a relative one meant the cwd of a run long gone)."""
    candidates = [folder / "pool.csv"]
    scores = meta.get("scores_from")
    if isinstance(scores, str) and Path(scores).is_absolute():
        candidates.append(Path(scores) / "pool.csv")
    return next((c for c in candidates if c.is_file()), None)


def _count_column(path: Path, column: str) -> dict[str, int]:
    """Counts of one column of a (possibly million-row) CSV, read as a stream."""
    counts: Counter[str] = Counter()
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            counts[row.get(column) or "(none)"] += 1
    return dict(counts)


__all__ = ["PartShare", "MethodParts", "TargetComposition", "compositions",
           "BY_SOURCE", "BY_CLASS", "FROM_SELECTION_JSON", "FROM_POOL_CSV", "FROM_RANDOM"]
