"""``npy:PATH``: embeddings computed elsewhere (CLIP, DINO, ...), given as .npy files.

PATH holds one row per pool image, in the order of the selection's ``pool.csv``; the
target's train images are in ``--target-features`` (default: PATH with ``.target.npy``).
The files are data: read with ``allow_pickle=False`` and memory-mapped, never run.
Rows that do not line up with the pool would silently score the wrong images, so a
wrong shape or type is a one-line error naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from condpretrain.data.sources import Target
from condpretrain.errors import CondPretrainError
from condpretrain.features.base import FEATURES, FeatureContext, FeatureSource

OPTION = "--features"


@FEATURES.register
class NpyFeatures(FeatureSource):
    name = "npy"
    summary = ("precomputed embeddings: --features npy:PATH, rows aligned with pool.csv, the "
               "target's in PATH.target.npy (embedding scorers only)")
    order = 2

    def network(self, target: Target | None, context: FeatureContext) -> nn.Module:
        raise CondPretrainError(
            f"{OPTION} npy:PATH gives embeddings, not a network: only the embedding scorers "
            "(knn, density-ratio) can use it")


def target_embeddings_path(pool_path: str | Path, given: str | None) -> Path:
    """The target's embeddings: the one given, else the pool file's ``.target.npy`` sibling."""
    if given:
        return Path(given)
    pool_path = Path(pool_path)
    return pool_path.with_name(pool_path.name.removesuffix(".npy") + ".target.npy")


def read_embeddings(path: str | Path, rows: int, what: str) -> np.ndarray:
    """The (rows, D) float array in ``path``, memory-mapped; anything else is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise CondPretrainError(f"{OPTION}: no such embeddings file for the {what}: {path}")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:  # not a .npy, or one holding Python objects
        raise CondPretrainError(f"{OPTION}: {path} is not a readable .npy array "
                                f"({type(exc).__name__})") from None
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
        raise CondPretrainError(f"{OPTION}: {path} must be a 2-D float array (rows x features), "
                                f"got shape {array.shape} of {array.dtype}")
    if array.shape[0] != rows:
        raise CondPretrainError(f"{OPTION}: {path} has {array.shape[0]} rows but the {what} has "
                                f"{rows} images (rows must follow pool.csv's order)")
    return array


__all__ = ["NpyFeatures", "read_embeddings", "target_embeddings_path"]
