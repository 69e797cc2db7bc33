"""``--method fuse:A,B,...``: reciprocal-rank fusion of finished selections' saved scores.

    score(x) = sum over methods m of 1 / (k + rank_m(x))

A part is a method (``knn``) or a method on given features (``knn@classic``, to fuse one
scorer over two views of the images). ``rank_m`` is 1-based by descending score of method
m; equal scores share the best rank among them (a tie favours no image), and an image that
a method could not score (NaN) gets a NaN fused score, so it is never selected. Nothing
is re-scored: only ranks count, so methods whose scores live on different scales
(probabilities, distances, entropies) combine without calibration (Cormack et al. 2009,
with their k = 60).

This module is the computation; :mod:`condpretrain.selection` reads the folders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from condpretrain.config.select import method_and_features
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

    @property
    def features(self) -> str | None:
        """The ``--features`` the selection was scored with (None if not recorded)."""
        return (self.record.get("parameters") or {}).get("features")

    def answers(self, part: str) -> bool:
        """Whether this selection is the fused part ``METHOD`` or ``METHOD@FEATURES``."""
        method, features = method_and_features(part)
        return self.method == method and (not features or self.features == features)


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


def pick_folders(saved: list[SavedScores], parts: list[str]) -> dict[str, SavedScores]:
    """The saved selection of each part named (``METHOD`` or ``METHOD@FEATURES``), in the
    order named; one-line errors for a part with no folder or with two, and for a folder
    that no part or two parts name."""
    for extra in (s for s in saved if not any(s.answers(part) for part in parts)):
        raise CondPretrainError(f"--fuse-from: {extra.folder} holds the scores of "
                                f"{_shown(extra)}, which --method does not fuse")
    picked: dict[str, SavedScores] = {}
    for part in parts:
        found = [s for s in saved if s.answers(part)]
        if len(found) != 1:
            have = ", ".join(f"{s.folder} ({_shown(s)})" for s in saved)
            raise CondPretrainError(f"--fuse-from: {'no' if not found else 'more than one'} "
                                    f"folder holds the scores of {part!r} (given: {have})")
        twice = next((p for p, s in picked.items() if s is found[0]), None)
        if twice is not None:
            raise CondPretrainError(f"--fuse-from: {found[0].folder} answers both {twice!r} "
                                    f"and {part!r}: name each part's features (METHOD@FEATURES)")
        picked[part] = found[0]
    return picked


def _shown(saved: SavedScores) -> str:
    return f"{saved.method!r} on --features {saved.features}" if saved.features \
        else repr(saved.method)


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


def fuse(saved: list[SavedScores], parts: list[str], k: float
         ) -> tuple[dict[str, SavedScores], np.ndarray]:
    """Each part's selection, in the order named (the first's pool order the fusion
    keeps), and the fused scores, aligned with the first's pool."""
    picked = pick_folders(saved, parts)
    first = next(iter(picked.values()))
    return picked, reciprocal_rank_fusion([aligned_scores(first, s) for s in picked.values()],
                                          k)


__all__ = ["SavedScores", "aligned_scores", "descending_ranks", "fuse", "pick_folders",
           "reciprocal_rank_fusion"]
