"""Clustering: k-means (K=200) on target features; pool images near the centres win.

Features are the penultimate layer of the target-trained model, or of a checkpoint the
user gives, e.g. a MoCo-v2 backbone (see :mod:`condpretrain.features`). They are
L2-normalised: raw pooled ResNet features vary in norm with image contrast, which would
otherwise dominate the distances.
"""

from __future__ import annotations

import faiss
import numpy as np
import torch

from condpretrain.data.sources import ImageIndex, Target
from condpretrain.features import feature_extractor
from condpretrain.log import get_logger
from condpretrain.scoring.base import SCORERS, Scorer, map_images

log = get_logger(__name__)


def fit_centres(features: np.ndarray, clusters: int, iterations: int, seed: int) -> np.ndarray:
    """faiss k-means on every feature (no silent subsampling), K clamped to the data."""
    features = features[~np.isnan(features).any(axis=1)]
    k = min(clusters, len(features))
    if k < clusters:
        log.warning("only %d target images: using K=%d clusters instead of %d",
                    len(features), k, clusters)
    kmeans = faiss.Kmeans(features.shape[1], k, niter=iterations, seed=seed, verbose=False,
                          max_points_per_centroid=max(256, len(features)), min_points_per_centroid=1)
    kmeans.train(np.ascontiguousarray(features, dtype=np.float32))
    return kmeans.centroids


class _ClusteringScorer(Scorer):
    """Shared by both variants; ``reduce`` turns a (batch, K) distance matrix into scores."""

    def fit(self, target: Target | None, pool: ImageIndex) -> None:
        config = self.context.config
        self.extractor = feature_extractor(target, self.context)
        dim = self._feature_dim()
        features = map_images(target.train, self.context, self._embed, dim, "target features")
        self.centres = fit_centres(features, config.clusters, config.kmeans_iters, config.seed)
        self.index = faiss.IndexFlatL2(dim)
        self.index.add(self.centres)
        self.context.models_used["kmeans"] = {"clusters": int(len(self.centres)),
                                              "iterations": config.kmeans_iters}

    def score(self, images: ImageIndex) -> np.ndarray:
        return map_images(images, self.context, self._score_batch, 1, desc="scoring pool")[:, 0]

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.extractor(images).float(), dim=1)

    def _score_batch(self, images: torch.Tensor) -> torch.Tensor:
        features = self._embed(images).cpu().numpy()
        squared, _ = self.index.search(features, len(self.centres))  # (batch, K), never pool x K
        distances = np.sqrt(np.maximum(squared, 0.0))
        return torch.from_numpy(-self.reduce(distances))

    def _feature_dim(self) -> int:
        probe = next(self.extractor.parameters())
        with torch.inference_mode():
            return int(self.extractor(torch.zeros(1, 3, 32, 32, device=probe.device)).shape[1])

    @staticmethod
    def reduce(distances: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@SCORERS.register
class ClusteringAverageScorer(_ClusteringScorer):
    name = "clustering-avg"
    label = "Clustering (Avg)"
    order = 4
    summary = "k-means (K=200) on target features; score = minus the mean distance to the centres"

    @staticmethod
    def reduce(distances: np.ndarray) -> np.ndarray:
        return distances.mean(axis=1)


@SCORERS.register
class ClusteringMinimumScorer(_ClusteringScorer):
    name = "clustering-min"
    label = "Clustering (Min)"
    order = 5
    summary = "k-means (K=200) on target features; score = minus the distance to the nearest centre"

    @staticmethod
    def reduce(distances: np.ndarray) -> np.ndarray:
        return distances.min(axis=1)
