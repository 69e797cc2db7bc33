"""Active learning by entropy of the target-trained classifier on each pool image.

``active-learning`` keeps the most uncertain pool images (high entropy), the paper's
standard active learning; ``inverse-active-learning`` keeps the most confident ones.
"""

from __future__ import annotations

import numpy as np
import torch

from condpretrain.data.sources import ImageIndex, Target
from condpretrain.scoring.base import SCORERS, Scorer, map_images


def prediction_entropy(logits: torch.Tensor) -> torch.Tensor:
    log_p = torch.log_softmax(logits.float(), dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


class _EntropyScorer(Scorer):
    needs_target_labels = True
    in_short_demo = False  # the short demo keeps random, the domain classifier and clustering
    sign: float = 1.0

    def fit(self, target: Target | None, pool: ImageIndex) -> None:
        self.model = self.context.target_classifier(target)

    def score(self, images: ImageIndex) -> np.ndarray:
        def signed_entropy(images: torch.Tensor) -> torch.Tensor:
            return self.sign * prediction_entropy(self.model(images))

        return map_images(images, self.context, signed_entropy, 1, desc="scoring pool")[:, 0]


@SCORERS.register
class ActiveLearningScorer(_EntropyScorer):
    name = "active-learning"
    label = "Active Learning"
    order = 2
    summary = "entropy of a target-trained classifier; most uncertain pool images first"
    sign = 1.0


@SCORERS.register
class InverseActiveLearningScorer(_EntropyScorer):
    name = "inverse-active-learning"
    label = "Inv. Active Learning"
    order = 1
    summary = "entropy of a target-trained classifier; most confident pool images first"
    sign = -1.0
