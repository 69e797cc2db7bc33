"""``density-ratio``: the domain classifier in feature space.

A logistic regression tells target embeddings from pool embeddings, with classes
weighted to balance. Its log-odds log p/(1-p) is then the log of the density ratio
p_target(x) / p_pool(x) up to a constant: an importance weight in log space, which
the ``sample`` policy can read as a log-weight. It fits a linear model on cached
embeddings, where the paper's domain classifier trains a ResNet on images.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from condpretrain.log import get_logger
from condpretrain.scoring.base import SCORERS
from condpretrain.scoring.knn import EmbeddingScorer

log = get_logger(__name__)


@SCORERS.register
class DensityRatioScorer(EmbeddingScorer):
    name = "density-ratio"
    label = "Density ratio (emb.)"
    order = 21  # after the paper's methods and knn
    summary = ("logistic regression target-vs-pool on embeddings (--features), class-balanced; "
               "score = log p/(1-p), the log density ratio up to a constant")

    def fit_embeddings(self, target: np.ndarray) -> None:
        config = self.context.config
        pool = self._pool_sample(config.density_pool_sample, config.seed)
        features = np.concatenate([target, pool])
        labels = np.concatenate([np.ones(len(target)), np.zeros(len(pool))])
        self.model = LogisticRegression(class_weight="balanced", max_iter=1000)
        self.model.fit(features, labels)
        self.context.models_used["density_ratio"] = {
            "target_rows": len(target), "pool_rows": len(pool)}

    def score_embeddings(self, rows: np.ndarray) -> np.ndarray:
        return self.model.decision_function(rows).astype(np.float32)

    def _pool_sample(self, size: int, seed: int) -> np.ndarray:
        """At most ``size`` readable pool rows, a seeded draw (the pool may be huge)."""
        pool_size = len(self.embeddings)
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(pool_size, size=min(size, pool_size), replace=False))
        rows = self.pool_rows(chosen)
        return rows[~np.isnan(rows).any(axis=1)]
