"""Uniform random scores: the baseline every selection must beat."""

from __future__ import annotations

import numpy as np

from condpretrain.data.sources import ImageIndex, Target
from condpretrain.scoring.base import Scorer, register_scorer


@register_scorer
class RandomScorer(Scorer):
    name = "random"
    summary = "uniform random scores, seeded (the paper's Random baseline)"

    def fit(self, target: Target) -> None:
        pass  # random selection ignores the target by design

    def score(self, pool: ImageIndex) -> np.ndarray:
        # Images are not decoded: an unreadable file is found (and skipped) by pre-training.
        rng = np.random.default_rng(self.context.config.seed)
        return rng.random(len(pool), dtype=np.float32)
