"""Clustering: k-means (K=200) on target features; pool images near the centres win.

Features are the penultimate layer of the target-trained model, or of a checkpoint the
user gives, e.g. a MoCo-v2 backbone (see :mod:`condpretrain.features`). They are
L2-normalised: raw pooled ResNet features vary in norm with image contrast, which would
otherwise dominate the distances.

By default (``--features target``, or ``--features-from CKPT``) the pool's features are
computed on the fly while scoring, as in the paper. Any other ``--features`` (a
checkpoint, a timm model, npy files) reads the pool's cached embeddings instead, the ones
knn and density-ratio share, so they are computed once for every method and budget.
"""

from __future__ import annotations

from typing import ClassVar

import faiss
import numpy as np
import torch

from condpretrain.config import SelectConfig
from condpretrain.data.sources import ImageIndex, Target
from condpretrain.faiss_device import flat_index, gpu_available
from condpretrain.features import feature_extractor
from condpretrain.features.embeddings import feature_dim
from condpretrain.log import get_logger
from condpretrain.scoring.base import SCORERS, map_images
from condpretrain.scoring.knn import EmbeddingScorer

log = get_logger(__name__)


def fit_centres(features: np.ndarray, clusters: int, iterations: int, seed: int,
                on_cuda: bool = False) -> np.ndarray:
    """faiss k-means on every feature (no silent subsampling), K clamped to the data; on
    the GPU for a selection on CUDA when faiss has one."""
    features = features[~np.isnan(features).any(axis=1)]
    k = min(clusters, len(features))
    if k < clusters:
        log.warning("only %d target images: using K=%d clusters instead of %d",
                    len(features), k, clusters)
    kmeans = faiss.Kmeans(features.shape[1], k, niter=iterations, seed=seed, verbose=False,
                          max_points_per_centroid=max(256, len(features)), min_points_per_centroid=1,
                          gpu=gpu_available(on_cuda))
    kmeans.train(np.ascontiguousarray(features, dtype=np.float32))
    return kmeans.centroids


def reads_cached_embeddings(config: SelectConfig) -> bool:
    """Whether clustering reads the pool's cached embeddings rather than computing the
    paper's features on the fly (the default, and --features-from, stay on the fly)."""
    return config.features != "target" and not config.features_from


class _ClusteringScorer(EmbeddingScorer):
    """Shared by both variants; ``reduce`` turns a (batch, K) distance matrix into scores.
    An embedding scorer only when ``--features`` names other features than the default."""

    # The paper's methods whatever features they read, unlike knn and density-ratio.
    in_paper: ClassVar[bool] = True
    in_short_demo: ClassVar[bool] = True

    def fit(self, target: Target | None, pool: ImageIndex) -> None:
        config = self.context.config
        self.cached = reads_cached_embeddings(config)
        if self.cached:
            super().fit(target, pool)  # the cached embeddings, then fit_embeddings
            return
        self.extractor = feature_extractor(target, self.context)
        dim = feature_dim(self.extractor, self.context)
        features = map_images(target.train, self.context, self._embed, dim, "target features")
        self._fit_index(fit_centres(features, config.clusters, config.kmeans_iters, config.seed,
                                    self.context.device.type == "cuda"))

    def _fit_index(self, centres: np.ndarray) -> None:
        self.centres = centres
        self.index = flat_index(centres, "l2", self.context.device.type == "cuda")
        self.context.models_used["kmeans"] = {"clusters": int(len(self.centres)),
                                              "iterations": self.context.config.kmeans_iters}

    def fit_embeddings(self, target: np.ndarray) -> None:
        config = self.context.config
        self._fit_index(fit_centres(target, config.clusters, config.kmeans_iters, config.seed,
                                    self.context.device.type == "cuda"))

    def score_embeddings(self, rows: np.ndarray) -> np.ndarray:
        return -self.reduce(self._distances(rows))

    def score(self, images: ImageIndex) -> np.ndarray:
        if self.cached:
            return super().score(images)
        return map_images(images, self.context, self._score_batch, 1, desc="scoring pool")[:, 0]

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.extractor(images).float(), dim=1)

    def _score_batch(self, images: torch.Tensor) -> torch.Tensor:
        features = self._embed(images).cpu().numpy()
        return torch.from_numpy(-self.reduce(self._distances(features)))

    def _distances(self, features: np.ndarray) -> np.ndarray:
        squared, _ = self.index.search(features, len(self.centres))  # (batch, K), never pool x K
        return np.sqrt(np.maximum(squared, 0.0))

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
