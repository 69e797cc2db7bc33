"""The selection folders an experiment's rows name: which subset.csv the report reads.

Both the "what each method picked" figures and finding (f) read the same subsets, so
the choice (the lowest seed of each target, budget and method whose set is complete)
lives here once.
"""

from __future__ import annotations

import csv
from pathlib import Path

from condpretrain.experiment.results import budget_key
from condpretrain.report.tables import number

SubsetKey = tuple[str, str, str]  # (target, budget_key, method)


def read_subset(path: Path) -> list[dict[str, str]]:
    """Rows of a subset.csv, top-scored first (by rank, else by score)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if rows and number(rows[0].get("rank")) is not None:
        rows.sort(key=lambda r: number(r.get("rank")) or 0.0)
    elif rows and number(rows[0].get("score")) is not None:
        rows.sort(key=lambda r: -(number(r.get("score")) or 0.0))
    return rows


def lowest_seed_subsets(out: Path, rows: list[dict[str, str]]
                        ) -> dict[SubsetKey, tuple[int, Path]]:
    """(target, budget, method) -> (seed, subset.csv) of the lowest seed that has one."""
    found: dict[SubsetKey, tuple[int, Path]] = {}
    for r in rows:
        if not r.get("select_dir"):
            continue
        path = Path(r["select_dir"])
        path = (path if path.is_absolute() else out / path) / "subset.csv"
        key = (r["target"], budget_key(float(r["budget"])), r["method"])
        seed = int(r["seed"])
        # selection.json marks a selection's files complete (atomic.OutputSet)
        complete = path.is_file() and (path.parent / "selection.json").is_file()
        if complete and (key not in found or seed < found[key][0]):
            found[key] = (seed, path)
    return found


def subset_files(out: Path, rows: list[dict[str, str]]) -> dict[SubsetKey, Path]:
    """(target, budget, method) -> subset.csv of the lowest seed that has one."""
    return {k: path for k, (_, path) in lowest_seed_subsets(out, rows).items()}


__all__ = ["SubsetKey", "read_subset", "lowest_seed_subsets", "subset_files"]
