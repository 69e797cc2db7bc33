"""``--method fuse:A,B,...``: reciprocal-rank fusion of finished selections' saved scores.

    score(x) = sum over methods m of 1 / (k + rank_m(x))

``rank_m`` is 1-based by descending score of method m; equal scores share the best rank
among them (a tie favours no image), and an image that a method could not score (NaN)
gets a NaN fused score, so it is never selected. Nothing is re-scored: only ranks count,
so methods whose scores live on different scales (probabilities, distances, entropies)
combine without calibration (Cormack et al. 2009, with their k = 60).

This module is the computation; :mod:`condpretrain.selection` reads the folders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from condpretrain.data.sources import ImageIndex
from condpretrain.errors import CondPretrainError


@dataclass
class SavedScores:
    """One finished selection: its folder, method, target, pool.csv, scores.npy and
    selection.json."""

    folder: Path
    method: str
    target: str | None
    pool: ImageIndex
    scores: np.ndarray
    record: dict[str, Any] = field(default_factory=dict)


def descending_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each score, highest first; ties share the best rank; NaN stays NaN."""
    scores = np.asarray(scores, dtype=np.float64)
    ranks = np.full(len(scores), np.nan)
    scored = ~np.isnan(scores)
    ascending = np.sort(-scores[scored])
    ranks[scored] = np.searchsorted(ascending, -scores[scored], side="left") + 1
    return ranks


def reciprocal_rank_fusion(score_lists: list[np.ndarray], k: float) -> np.ndarray:
    """The fused score of each image (float32), from aligned per-method scores."""
    fused = np.zeros(len(score_lists[0]), dtype=np.float64)
    for scores in score_lists:
        fused += 1.0 / (k + descending_ranks(scores))
    return fused.astype(np.float32)


def pick_folders(saved: list[SavedScores], methods: list[str]) -> list[SavedScores]:
    """The saved selection of each method named, in the order named; one-line errors
    for a method with no folder or with two."""
    for extra in (s for s in saved if s.method not in methods):
        raise CondPretrainError(f"--fuse-from: {extra.folder} holds the scores of "
                                f"{extra.method!r}, which --method does not fuse")
    picked = []
    for method in methods:
        found = [s for s in saved if s.method == method]
        if len(found) != 1:
            have = ", ".join(f"{s.folder} ({s.method})" for s in saved)
            raise CondPretrainError(f"--fuse-from: {'no' if not found else 'more than one'} "
                                    f"folder holds the scores of {method!r} (given: {have})")
        picked.append(found[0])
    return picked


def aligned_scores(first: SavedScores, other: SavedScores) -> np.ndarray:
    """``other``'s scores in ``first``'s pool order; a one-line error naming ``other``'s
    folder unless both scored the same images (the same paths, compared sorted)."""
    if sorted(other.pool.paths) != sorted(first.pool.paths) or \
            len(set(other.pool.paths)) != len(other.pool.paths):
        raise CondPretrainError(f"--fuse-from: {other.folder} scored another pool than "
                                f"{first.folder} ({len(other.pool)} vs {len(first.pool)} "
                                "images, not the same paths): fuse selections of one pool")
    if other.target != first.target:
        raise CondPretrainError(f"--fuse-from: {other.folder} was selected for target "
                                f"{other.target!r}, {first.folder} for {first.target!r}")
    position = {path: i for i, path in enumerate(other.pool.paths)}
    return other.scores[[position[path] for path in first.pool.paths]]


def fuse(saved: list[SavedScores], methods: list[str], k: float
         ) -> tuple[SavedScores, np.ndarray]:
    """The first named method's selection (whose pool order the fusion keeps) and the
    fused scores, aligned with its pool."""
    picked = pick_folders(saved, methods)
    first = picked[0]
    return first, reciprocal_rank_fusion([aligned_scores(first, s) for s in picked], k)


__all__ = ["SavedScores", "aligned_scores", "descending_ranks", "fuse", "pick_folders",
           "reciprocal_rank_fusion"]
