"""Active learning by entropy of the target-trained classifier on each pool image.

``active-learning`` keeps the most uncertain pool images (high entropy), the paper's
standard active learning; ``inverse-active-learning`` keeps the most confident ones.
"""

from __future__ import annotations

import numpy as np
import torch

from condpretrain.data.sources import ImageIndex, Target
from condpretrain.scoring.base import Scorer, map_images, register_scorer
from condpretrain.scoring.target_model import target_model


def prediction_entropy(logits: torch.Tensor) -> torch.Tensor:
    log_p = torch.log_softmax(logits.float(), dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


class _EntropyScorer(Scorer):
    needs_target_labels = True
    sign: float = 1.0

    def fit(self, target: Target | None, pool: ImageIndex) -> None:
        self.model = target_model(target, self.context).model

    def score(self, images: ImageIndex) -> np.ndarray:
        def signed_entropy(images: torch.Tensor) -> torch.Tensor:
            return self.sign * prediction_entropy(self.model(images))

        return map_images(images, self.context, signed_entropy, 1, desc="scoring pool")[:, 0]


@register_scorer
class ActiveLearningScorer(_EntropyScorer):
    name = "active-learning"
    summary = "entropy of a target-trained classifier; most uncertain pool images first"
    sign = 1.0


@register_scorer
class InverseActiveLearningScorer(_EntropyScorer):
    name = "inverse-active-learning"
    summary = "entropy of a target-trained classifier; most confident pool images first"
    sign = -1.0
