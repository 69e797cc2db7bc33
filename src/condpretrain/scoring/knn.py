"""``knn``: mean cosine similarity of a pool image to its k nearest target embeddings.

Also home to :class:`EmbeddingScorer`, what the embedding scorers share: they read the
pool's cached embeddings (:mod:`condpretrain.features.embeddings`), computed once per
(features, pool) and reused by every such method and budget, and are charged what
computing them took, like a shared model.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from condpretrain.config import SelectConfig
from condpretrain.data.sources import ImageIndex, Target
from condpretrain.faiss_device import flat_index
from condpretrain.features.base import FEATURES
from condpretrain.features.blocks import rule_for, target_block_scale
from condpretrain.features.embeddings import embeddings_for, normalise, parse_features
from condpretrain.log import get_logger
from condpretrain.scoring.base import SCORERS, Scorer

log = get_logger(__name__)


class EmbeddingScorer(Scorer):
    """Scores computed from embeddings alone: subclasses fit on the target's (and the
    pool's) rows and score a batch of pool rows (unit-length float32, each block scaled
    by its --block-weights weight)."""

    in_paper: ClassVar[bool] = False  # beyond the paper: in a grid when asked for
    in_short_demo: ClassVar[bool] = False

    @classmethod
    def needs_labels(cls, config: SelectConfig) -> bool:
        """The default features are the target-trained classifier's, which needs labels;
        ``--features-from`` or any other features (``moco:target``, ``classic``) do not."""
        return config.features == "target" and not config.features_from

    def fit(self, target: Target | None, pool: ImageIndex) -> None:
        self.embeddings, target_rows = embeddings_for(target, pool, self.context)
        if self.embeddings.folder is not None:
            self.context.charge_shared(self.embeddings.folder,
                                       {"seconds": self.embeddings.seconds, "processes": 1},
                                       self.embeddings.computed_here)
        self.row_of = {path: row for row, path in enumerate(pool.paths)}
        readable = ~np.isnan(target_rows).any(axis=1)
        labels = np.asarray(target.train.labels)[readable].tolist() if target else []
        self.scale = self._block_scale(target_rows[readable], labels)
        self.fit_embeddings(np.ascontiguousarray(self._weighted(target_rows[readable])))

    def _block_scale(self, rows: np.ndarray, labels: list[str]) -> np.ndarray | None:
        """Column factors of --block-weights for this target (None: unweighted)."""
        config = self.context.config
        name, argument = parse_features(config.features)
        scale, record = target_block_scale(rule_for(config.block_weights, argument), rows,
                                           labels, FEATURES.get_class(name).block_layout(argument))
        self.context.models_used["block_weights"] = record
        return scale

    def _weighted(self, rows: np.ndarray) -> np.ndarray:
        rows = rows if self.scale is None else rows * self.scale
        return np.asarray(rows, dtype=np.float32)

    def pool_rows(self, indices: list[int] | np.ndarray) -> np.ndarray:
        """Pool rows by position: unit length, then block-weighted (NaN: unreadable)."""
        return self._weighted(normalise(self.embeddings.rows(indices)))

    def score(self, images: ImageIndex) -> np.ndarray:
        rows = self.pool_rows([self.row_of[path] for path in images.paths])
        readable = ~np.isnan(rows).any(axis=1)
        scores = np.full(len(images), np.nan, dtype=np.float32)
        if readable.any():
            scores[readable] = self.score_embeddings(np.ascontiguousarray(rows[readable]))
        for path in np.asarray(images.paths, dtype=object)[~readable]:
            self.context.skipped[path] = self.embeddings.skipped.get(path, "no embedding")
        return scores

    def fit_embeddings(self, target: np.ndarray) -> None:
        raise NotImplementedError

    def score_embeddings(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@SCORERS.register
class KnnScorer(EmbeddingScorer):
    name = "knn"
    label = "k-NN (emb.)"
    order = 20  # after the paper's methods
    summary = ("mean cosine similarity to the --knn-k nearest target embeddings "
               "(--features; faiss, on the GPU when there is one)")

    def fit_embeddings(self, target: np.ndarray) -> None:
        self.k = min(self.context.config.knn_k, len(target))
        if self.k < self.context.config.knn_k:
            log.warning("only %d readable target images: knn uses k=%d", len(target), self.k)
        self.index = flat_index(target, "ip", self.context.device.type == "cuda")
        self.context.models_used["knn"] = {"k": self.k, "target_rows": len(target)}

    def score_embeddings(self, rows: np.ndarray) -> np.ndarray:
        similarities, _ = self.index.search(rows, self.k)
        return similarities.mean(axis=1)

