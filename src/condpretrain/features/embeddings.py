"""Pool embeddings: computed once per (features, pool), cached as shards, memory-mapped.

The embedding scorers (knn, density-ratio) compare images in a feature space. Running a
network over the pool is their costly part, so it happens once: the L2-normalised
features are written as float16 shards under ``CACHE/embeddings-<key>/`` and every
scorer, budget and (for features that do not depend on the target) target reuses them.
The key hashes what determines the numbers: the feature source (for ``target`` features
the target-trained model's file, which names the target and its recipe), the pool's
image list, the resolution and the decoding bound.

Like scores, shards are written atomically one by one, so a killed run resumes at the
first missing shard; under torchrun rank r computes shards r, r+W, ... and all ranks
read the whole set after a barrier. A shard's sidecar JSON records its unreadable
images and how long it took (what a selection that uses the shards is charged).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from condpretrain import atomic
from condpretrain.data.device_decode import mapped_batches
from condpretrain.data.sources import ImageIndex, Target
from condpretrain.dist import DistContext, barrier
from condpretrain.errors import CondPretrainError
from condpretrain.features.base import FEATURES, FeatureContext
from condpretrain.features.classic import parse_blocks
from condpretrain.features.npy import read_embeddings, target_embeddings_path
from condpretrain.log import get_logger, progress_bar

log = get_logger(__name__)

META = "meta.json"


@dataclass
class PoolEmbeddings:
    """The pool's embeddings as shards (memory-mapped), one row per pool image, in order."""

    shards: list[np.ndarray]
    shard_size: int
    skipped: dict[str, str]  # path -> why it could not be read (its row is NaN)
    folder: Path | None = None  # None: given by the user (npy), not cached by us
    seconds: float = 0.0  # what computing every shard took, summed over processes
    computed_here: bool = False

    def __len__(self) -> int:
        return sum(len(shard) for shard in self.shards)

    @property
    def dim(self) -> int:
        return int(self.shards[0].shape[1])

    def rows(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """Rows ``indices`` as float32, read from the shards that hold them."""
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), self.dim), dtype=np.float32)
        shard_of, offset = np.divmod(indices, self.shard_size)
        for shard in np.unique(shard_of):
            mask = shard_of == shard
            out[mask] = self.shards[shard][offset[mask]]
        return out


def parse_features(text: str) -> tuple[str, str]:
    """``--features`` as (source, argument): 'target' -> ('target', ''), 'npy:X' -> ('npy', 'X'),
    'moco:target' -> ('moco', 'target')."""
    name, _, argument = text.partition(":")
    FEATURES.get_class(name)  # an unknown source is a one-line error naming --features
    if name == "npy" and not argument:
        raise CondPretrainError("--features: npy needs a file: npy:PATH")
    if name == "timm" and not argument:
        raise CondPretrainError("--features: timm needs a model name: timm:NAME[@WEIGHTS]")
    if name == "moco" and argument != "target":
        # Only the target's images are MoCo-trained here (the pool joins through
        # --moco-pool-sample); a MoCo backbone of anything else is checkpoint:CKPT.
        raise CondPretrainError(f"--features: moco takes only 'target' (moco:target), got "
                                f"{text!r}; for another MoCo backbone use checkpoint:CKPT")
    if name == "classic":
        parse_blocks(argument)
    if argument and name not in ("npy", "checkpoint", "timm", "moco", "classic"):
        raise CondPretrainError(f"--features: {name} takes no argument, got {text!r}")
    return name, argument


def normalise(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (cosine = dot product); NaN rows stay NaN."""
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def embed_images(index: ImageIndex, extractor: nn.Module, context: FeatureContext,
                 dim: int, desc: str) -> tuple[np.ndarray, dict[str, str]]:
    """L2-normalised float32 features of every image, streamed; NaN rows (and their reason
    in the returned dict) for files that could not be read."""
    out = np.full((len(index), dim), np.nan, dtype=np.float32)
    skipped: dict[str, str] = {}

    def embed(images: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(extractor(images).float(), dim=1)

    with torch.inference_mode(), progress_bar(len(index), desc=desc, unit="img") as bar:
        for batch, features in mapped_batches(index, context.config, context.device, embed):
            if features is not None:
                out[batch.rows[batch.good]] = features
            skipped.update((index.paths[row], error)
                           for row, error in zip(batch.rows, batch.errors, strict=True) if error)
            bar.update(len(batch.rows))
    return out, skipped


def feature_dim(extractor: nn.Module, context: FeatureContext) -> int:
    size = context.config.filter_resolution
    with torch.inference_mode():
        probe = torch.zeros(1, 3, size, size, device=context.device)
        return int(extractor(probe).shape[1])


def content_key(settings: dict[str, Any], paths: Iterable[str]) -> str:
    """A short hash of ``settings`` and of ``paths`` in order: what names a cache folder."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in paths:
        digest.update(path.encode("utf-8") + b"\0")
    return digest.hexdigest()[:16]


def embeddings_key(features_key: str, pool: ImageIndex, context: FeatureContext) -> str:
    """A short hash of everything that determines the pool's embeddings."""
    config = context.config
    return content_key({"features": features_key, "resolution": config.filter_resolution,
                        "max_pixels": config.max_image_pixels}, pool.paths)


def pool_embeddings(features_key: str, pool: ImageIndex, extractor: nn.Module,
                    context: FeatureContext, cache_dir: Path) -> PoolEmbeddings:
    """The pool's cached embeddings under ``cache_dir``; missing shards computed first."""
    dist: DistContext = getattr(context, "dist", None) or DistContext()
    folder = Path(cache_dir) / f"embeddings-{embeddings_key(features_key, pool, context)}"
    if dist.is_main and not (folder / META).is_file():
        # The shard size is fixed when the folder is made: a later run with another
        # --chunk-size (a neutral option) still reads these shards.
        atomic.write_json(folder / META, {"features": features_key, "images": len(pool),
                                          "shard_size": context.config.chunk_size})
    barrier(dist)
    size = int(atomic.read_json(folder / META)["shard_size"])
    count = max(1, -(-len(pool) // size))
    mine = [s for s in range(dist.rank, count, dist.world_size) if not _shard(folder, s).is_file()]
    if mine:
        if len(mine) < len(range(dist.rank, count, dist.world_size)):
            log.info("resuming pool embeddings in %s: %d shard(s) left", folder, len(mine))
        dim = feature_dim(extractor, context)
        for s in mine:
            _compute_shard(folder, s, pool.take(np.arange(s * size, min((s + 1) * size,
                                                                        len(pool)))),
                           extractor, context, dim, f"embeddings {s + 1}/{count}")
    else:
        log.info("reusing pool embeddings in %s", folder)
    barrier(dist)
    return _read_folder(folder, count, size, computed_here=bool(mine))


def _compute_shard(folder: Path, shard: int, part: ImageIndex, extractor: nn.Module,
                   context: FeatureContext, dim: int, desc: str) -> None:
    started = time.perf_counter()
    features, skipped = embed_images(part, extractor, context, dim, desc)
    # The sidecar first: a shard counts as done once its .npy exists.
    atomic.write_json(_sidecar(folder, shard), {
        "rows": len(part), "seconds": round(time.perf_counter() - started, 3),
        "skipped": skipped})
    atomic.save_npy(_shard(folder, shard), features.astype(np.float16))


def read_cached(folder: Path, pool_size: int, option: str) -> PoolEmbeddings:
    """A finished embeddings folder of a pool of ``pool_size`` images, read back
    (memory-mapped) without computing anything; a one-line error naming ``option`` when
    it is gone, of another pool or unfinished."""
    if not (folder / META).is_file():
        raise CondPretrainError(f"{option}: the pool embeddings {folder} are gone (was the "
                                "cache cleared?); run select again to compute them")
    meta = atomic.read_json(folder / META)
    if int(meta.get("images", -1)) != pool_size:
        raise CondPretrainError(f"{option}: {folder} holds embeddings of {meta.get('images')} "
                                f"images, not of this pool's {pool_size}")
    size = int(meta["shard_size"])
    count = max(1, -(-pool_size // size))
    missing = [s for s in range(count) if not _shard(folder, s).is_file()]
    if missing:
        raise CondPretrainError(f"{option}: {_shard(folder, missing[0])} is missing (the "
                                "embeddings were not finished); run select again to compute "
                                "them")
    return _read_folder(folder, count, size, computed_here=False)


def _read_folder(folder: Path, count: int, size: int, computed_here: bool) -> PoolEmbeddings:
    shards, skipped, seconds = [], {}, 0.0
    for s in range(count):
        shards.append(np.load(_shard(folder, s), mmap_mode="r", allow_pickle=False))
        record: dict[str, Any] = atomic.read_json(_sidecar(folder, s))
        skipped.update(record.get("skipped", {}))
        seconds += float(record.get("seconds", 0.0))
    return PoolEmbeddings(shards, size, skipped, folder, seconds, computed_here)


def _shard(folder: Path, shard: int) -> Path:
    return folder / f"shard-{shard:06d}.npy"


def _sidecar(folder: Path, shard: int) -> Path:
    return folder / f"shard-{shard:06d}.json"


# ------------------------------------------------------------- what --features resolves to


class _WithConfig:
    """``context`` seen with another config (``checkpoint:CKPT`` read as --features-from)."""

    def __init__(self, context: FeatureContext, config: Any) -> None:
        self._context, self.config = context, config

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def embeddings_for(target: Target | None, pool: ImageIndex, context: FeatureContext
                   ) -> tuple[PoolEmbeddings, np.ndarray]:
    """The pool's embeddings (cached) and the target train images' (float32), both from
    the source ``--features`` names, for the embedding scorers."""
    config = context.config
    name, argument = parse_features(config.features)
    if target is None:
        raise CondPretrainError("--target: the embedding scorers need a target")
    if name == "npy":
        return _npy_embeddings(argument, config.target_features, pool, target)
    if name == "checkpoint":
        path = argument or config.features_from
        if not path:
            raise CondPretrainError("--features: checkpoint needs a file: checkpoint:CKPT")
        # a copy: the caller's config stays as it was
        context = _WithConfig(context, replace(config, features_from=path))
    if name == "moco":  # --moco-pool-sample draws from the pool being scored
        context = _WithConfig(context, config)
        context.pool = pool
    extractor = FEATURES.get_class(name)().extractor(target, context)
    key = _source_key(name, context)
    dim = feature_dim(extractor, context)
    target_features, _ = embed_images(target.train, extractor, context, dim, "target embeddings")
    embeddings = pool_embeddings(key, pool, extractor, context, Path(context.cache_dir))
    context.models_used["embeddings"] = {"features": key, "path": str(embeddings.folder)}
    return embeddings, target_features


def _source_key(name: str, context: FeatureContext) -> str:
    """What identifies a source's network: the target model's cached file (which names the
    target and its recipe), the checkpoint file as it is now, or the cached MoCo run."""
    if name == "checkpoint":
        path = Path(context.config.features_from).resolve()
        stat = path.stat()
        return f"checkpoint:{path}:{stat.st_size}:{stat.st_mtime_ns}"
    if name == "moco":  # its cached run folder's name hashes the images and the recipe
        return f"moco:{Path(context.models_used['features']['backbone']).parent.name}"
    model = context.models_used.get("target_model", {}).get("path")
    if name != "target" or model is None:  # timm, or a later source: its own record
        # (model, weights file or seed) is what its features depend on
        return f"{name}:{json.dumps(context.models_used.get('features'), sort_keys=True)}"
    return f"{name}:{Path(model).name}"


def _npy_embeddings(path: str, target_path: str | None, pool: ImageIndex, target: Target
                    ) -> tuple[PoolEmbeddings, np.ndarray]:
    pool_array = read_embeddings(path, len(pool), "pool")
    target_array = read_embeddings(target_embeddings_path(path, target_path),
                                   len(target.train), "target's train split")
    if target_array.shape[1] != pool_array.shape[1]:
        raise CondPretrainError(
            f"--features: {target_embeddings_path(path, target_path)} has "
            f"{target_array.shape[1]} features per row but {path} has {pool_array.shape[1]}")
    return (PoolEmbeddings([pool_array], max(1, len(pool_array)), {}),
            normalise(np.asarray(target_array, dtype=np.float32)))


__all__ = ["PoolEmbeddings", "content_key", "embed_images", "embeddings_for", "normalise",
           "parse_features", "pool_embeddings", "read_cached"]
