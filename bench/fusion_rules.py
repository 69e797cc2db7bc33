"""Fusion rules, offline: would another way of fusing saved scores meet the fusion goal?

Reads the selections that ``bench/selection_quality.py`` left under its ``--out``
(``seedN/runs/TARGET/METHOD/`` with ``pool.csv`` and ``scores.npy``; nothing is re-scored)
and, for every set of two or more of the new methods' runs (``METHOD@FEATURES``) and every
rule below, takes each budget top-first from the fused scores and prints how far the
fusion trails the best single method (paper or new, also taken top-first from its saved
scores) on the target's related pool part, over every data seed, target and budget:

  rrf-K    reciprocal-rank fusion, sum of 1 / (K + rank) (the tool's ``fuse``, K = 60)
  minrank  an image's best rank among the parts (ties: rrf-60)
  zsum     sum of robust z-scores, (score - median) / (1.4826 MAD), per part

It answers one question with measured figures: is goal 2 of ``selection_quality.py``
(fuse within ``--tolerance`` points of the best single method everywhere) out of reach
because of the rule or because of the parts? Run selection_quality first, then e.g.

    python bench/fusion_rules.py --out /tmp/condpretrain-selq
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _util import print_table  # noqa: E402
from selection_quality import RELATED  # noqa: E402

from condpretrain.data.sources import read_index_csv  # noqa: E402
from condpretrain.scoring.fuse import descending_ranks, reciprocal_rank_fusion  # noqa: E402

Rule = Callable[[list[np.ndarray]], np.ndarray]


def robust_z(scores: np.ndarray) -> np.ndarray:
    median = np.nanmedian(scores)
    spread = 1.4826 * np.nanmedian(np.abs(scores - median))
    return (scores - median) / max(float(spread), 1e-12)


def min_rank(parts: list[np.ndarray]) -> np.ndarray:
    best = np.nanmin([descending_ranks(p) for p in parts], axis=0)
    # RRF (< 1 / 61 per part, summed < 1) orders images that share a best rank
    return -best + reciprocal_rank_fusion(parts, 60.0)


RULES: dict[str, Rule] = {
    "rrf-60": lambda parts: reciprocal_rank_fusion(parts, 60.0),
    "rrf-10": lambda parts: reciprocal_rank_fusion(parts, 10.0),
    "rrf-1": lambda parts: reciprocal_rank_fusion(parts, 1.0),
    "minrank": min_rank,
    "zsum": lambda parts: np.sum([robust_z(p) for p in parts], axis=0),
}


def load_runs(target_dir: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The pool part of every image (sorted by path) and each finished run's scores in
    that order; ``@large`` re-draws and fusions are left out (their scores are not new)."""
    runs, pools = {}, None
    for folder in sorted(p for p in target_dir.iterdir() if (p / "scores.npy").is_file()):
        if folder.name.endswith("@large") or folder.name.startswith("fuse"):
            continue
        index = read_index_csv(folder / "pool.csv", str(folder))
        order = np.argsort(index.paths)
        runs[folder.name.replace("_", "@", 1)] = np.load(folder / "scores.npy")[order]
        pools = np.asarray(index.pools)[order] if pools is None else pools
    if pools is None:
        raise SystemExit(f"fusion_rules: no finished selection under {target_dir}")
    return pools, runs


def related_share(scores: np.ndarray, pools: np.ndarray, related: str, fraction: float) -> float:
    budget = max(1, round(fraction * len(scores)))
    top = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")[:budget]
    return 100.0 * float(np.mean(pools[top] == related))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/condpretrain-selq",
                        help="selection_quality.py's --out")
    parser.add_argument("--budgets", default="0.06,0.12")
    parser.add_argument("--tolerance", type=float, default=5.0)
    parser.add_argument("--show", type=int, default=12, help="rows shown, smallest gap first")
    args = parser.parse_args()
    budgets = [float(b) for b in args.budgets.split(",")]
    cases = [(seed_dir.name, target, runs_dir) for seed_dir in sorted(Path(args.out).glob("seed*"))
             for target in RELATED if (runs_dir := seed_dir / "runs" / target).is_dir()]
    if not cases:
        raise SystemExit(f"fusion_rules: nothing under {args.out}; run selection_quality.py first")
    gaps: dict[tuple[str, str], list[tuple[float, str]]] = {}
    for seed, target, runs_dir in cases:
        pools, runs = load_runs(runs_dir)
        new = sorted(name for name in runs if "@" in name)
        for fraction in budgets:
            best = max(related_share(s, pools, RELATED[target], fraction) for s in runs.values())
            where = f"{target}@{fraction:.0%} ({seed})"
            for size in range(2, len(new) + 1):
                for parts in itertools.combinations(new, size):
                    for rule, fuse in RULES.items():
                        fused = fuse([runs[p] for p in parts])
                        gap = best - related_share(fused, pools, RELATED[target], fraction)
                        gaps.setdefault((" + ".join(parts), rule), []).append((gap, where))
    rows = []
    for (parts, rule), found in gaps.items():
        failed = [where for gap, where in found if gap > args.tolerance]
        worst = max(found)
        rows.append([rule, parts, f"{worst[0]:+.1f}", worst[1],
                     f"{np.median([g for g, _ in found]):+.1f}", len(failed)])
    rows.sort(key=lambda row: (row[5], float(row[2])))
    print_table(f"Fusion rules on saved scores: best single method's share minus the fusion's "
                f"(points), over {len(cases)} (seed, target) cases x {len(budgets)} budgets; "
                f"the {args.show} best of {len(rows)}",
                ["rule", "parts", "worst gap", "worst at", "median gap",
                 f"cases > {args.tolerance:g}"], rows[:args.show])
    met = [row for row in rows if row[5] == 0]
    print(f"\nGoal 2 (every case within {args.tolerance:g} points): "
          + (f"met by {len(met)} of {len(rows)} (rule, parts) pairs" if met else
             f"met by none of the {len(rows)} (rule, parts) pairs"))


if __name__ == "__main__":
    main()
