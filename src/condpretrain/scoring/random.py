"""Uniform random scores: the baseline every selection must beat."""

from __future__ import annotations

import hashlib

import numpy as np

from condpretrain.data.sources import ImageIndex, Target
from condpretrain.scoring.base import SCORERS, Scorer


@SCORERS.register
class RandomScorer(Scorer):
    name = "random"
    label = "Random"
    order = 0
    summary = "uniform random scores, seeded (the paper's Random baseline)"
    needs_target = False

    def fit(self, target: Target | None, pool: ImageIndex) -> None:
        pass  # random selection ignores the target by design

    def score(self, images: ImageIndex) -> np.ndarray:
        """A seeded hash of each path: the same image gets the same score whatever the
        pool's order, chunking or number of processes. Images are not decoded; an
        unreadable file is found (and skipped) by pre-training."""
        seed = self.context.config.seed
        return np.array([_uniform(f"{seed}:{path}") for path in images.paths], dtype=np.float32)


def _uniform(key: str) -> float:
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64
