"""``--balance-by features``: the groups of ``--policy balanced`` from the pool's images.

The pool's embeddings of ``--features`` (the shards the embedding scorers read,
``CACHE/embeddings-<key>/``, or an ``npy:PATH`` file) are clustered by k-means, and each
image's group is its nearest centre. Capping each cluster keeps a subset from being a
pile of near-duplicates, as cluster-balanced sampling and SemDeDup do.

* k-means is fitted on a seeded sample of at most 256 rows per centre (faiss's own cap:
  more rows add time, not better centres), then every pool row is assigned in batches,
  so the pool x K distances never exist at once. Rows without an embedding (unreadable
  images, which have NaN scores too) are in no group (-1).
* The assignment is cached by (embeddings, K, seed, iterations): inside the embeddings
  folder, or under the selection's cache for an npy file, so re-selections at other
  budgets reuse it. Its sidecar JSON is written first; the ``.npy`` marks it done.

Embeddings come from what the selection already has: those the scorer read (recorded in
``models_used["embeddings"]``), else ``npy:PATH``, else they are computed through the
features layer. A re-selection reads only what its selection recorded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from condpretrain import atomic
from condpretrain.config import SelectConfig
from condpretrain.data.sources import ImageIndex, Target
from condpretrain.errors import CondPretrainError
from condpretrain.faiss_device import flat_index, on_cuda
from condpretrain.features.embeddings import (
    PoolEmbeddings,
    content_key,
    embeddings_for,
    normalise,
    read_cached,
)
from condpretrain.features.npy import read_embeddings
from condpretrain.log import get_logger
from condpretrain.policies import Grouping
from condpretrain.scoring import ScoringContext
from condpretrain.scoring.clustering import fit_centres

log = get_logger(__name__)

OPTION = "--balance-by features"
SAMPLE_PER_CLUSTER = 256
BATCH_ROWS = 16_384  # pool rows assigned at a time (their distances to every centre)


@dataclass(frozen=True)
class GroupEmbeddings:
    """The pool's embeddings to cluster, and where their assignments are cached."""

    rows: PoolEmbeddings
    name: str  # what selection.json names: the shard folder or the npy file
    identity: str  # what the cache key hashes: the content the rows come from
    cache_dir: Path


def wanted(config: SelectConfig) -> bool:
    return config.policy == "balanced" and config.balance_by == "features"


def embeddings_at_select(config: SelectConfig, target: Target | None, pool: ImageIndex,
                         context: ScoringContext) -> GroupEmbeddings | None:
    """The pool's embeddings for ``select`` (None unless grouping by features). Every
    rank calls it: computing the shards is shared among them."""
    if not wanted(config):
        return None
    recorded = context.models_used.get("embeddings", {}).get("path")
    if recorded:  # the scorer read them: no second pass over the pool
        return _shard_folder(Path(recorded), len(pool))
    name, _, argument = config.features.partition(":")
    if name == "npy":
        return _npy_file(argument, len(pool), Path(context.cache_dir))
    if target is None:
        raise CondPretrainError(f"{OPTION}: computing the pool's --features {config.features} "
                                "embeddings needs a --target (or give --features npy:PATH)")
    log.info("%s: computing the pool's --features %s embeddings", OPTION, config.features)
    # embeddings_for embeds the target's train images too: a small cost next to the pool's
    embeddings, _ = embeddings_for(target, pool, context)
    if embeddings.folder is None:  # a source that gives its rows without caching them
        return GroupEmbeddings(embeddings, config.features, config.features,
                               Path(context.cache_dir))
    context.charge_shared(embeddings.folder, {"seconds": embeddings.seconds, "processes": 1},
                          embeddings.computed_here)
    return _shard_folder(embeddings.folder, len(pool))


def saved_embeddings(record: dict[str, Any], config: SelectConfig, folder: Path,
                     pool_size: int) -> GroupEmbeddings | None:
    """The embeddings a finished selection (``folder``, its ``record``) used, for a
    re-selection from its scores (None unless grouping by features)."""
    if not wanted(config):
        return None
    models = record.get("models")
    recorded = models.get("embeddings", {}).get("path") if isinstance(models, dict) else None
    if recorded:
        return _shard_folder(Path(recorded), pool_size)
    parameters = record.get("parameters", {})
    name, _, argument = str(parameters.get("features", "")).partition(":")
    if name == "npy":
        cache = parameters.get("cache_dir")
        return _npy_file(argument, pool_size, Path(cache) if cache else folder / "cache")
    raise CondPretrainError(f"{OPTION}: {folder} recorded no pool embeddings (its method did "
                            "not read any); run select with --policy balanced --balance-by "
                            "features --features SOURCE to compute them")


def feature_grouping(source: GroupEmbeddings | None, config: SelectConfig) -> Grouping | None:
    """The pool's k-means groups (cached), or None when there is nothing to cluster."""
    if source is None:
        return None
    ids, info = cluster_assignment(source, config.balance_clusters, config.kmeans_iters,
                                   config.seed, on_cuda(config.device))
    return Grouping(ids, "features", {"clusters": info["clusters"], "sample": info["sample"],
                                      "embeddings": source.name})


def cluster_assignment(source: GroupEmbeddings, clusters: int, iterations: int, seed: int,
                       cuda: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Each pool row's cluster (-1: no embedding) and its record; computed once per
    (embeddings, K, seed, iterations), then read back."""
    key = content_key({"embeddings": source.identity, "clusters": clusters, "seed": seed,
                       "iterations": iterations}, [])
    path = source.cache_dir / f"groups-{key}.npy"
    sidecar = path.with_suffix(".json")
    if path.is_file() and sidecar.is_file():
        ids = np.load(path, allow_pickle=False)
        if ids.shape == (len(source.rows),):
            log.info("%s: reusing the cluster assignment %s", OPTION, path)
            return ids.astype(np.int64), atomic.read_json(sidecar)
    started = time.perf_counter()
    ids, used, sample = assign_clusters(source.rows, clusters, iterations, seed, cuda)
    info = {"clusters": used, "requested": clusters, "sample": sample, "seed": seed,
            "iterations": iterations, "rows": len(ids), "embeddings": source.name,
            "seconds": round(time.perf_counter() - started, 3)}
    atomic.write_json(sidecar, info)
    atomic.save_npy(path, ids.astype(np.int32))
    log.info("%s: %d clusters of %d rows -> %s", OPTION, used, len(ids), path)
    return ids, info


def assign_clusters(rows: PoolEmbeddings, clusters: int, iterations: int, seed: int,
                    cuda: bool = False) -> tuple[np.ndarray, int, int]:
    """(cluster of every row, -1 without an embedding; K used; rows k-means was fitted on)."""
    readable = np.zeros(len(rows), dtype=bool)
    for start, batch in _batches(rows):
        readable[start:start + len(batch)] = ~np.isnan(batch).any(axis=1)
    ids = np.full(len(rows), -1, dtype=np.int64)
    count = int(readable.sum())
    if count == 0:
        return ids, 0, 0
    k = min(clusters, count)
    if k < clusters:
        log.warning("%s: only %d pool images have embeddings: using K=%d clusters instead "
                    "of %d", OPTION, count, k, clusters)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(np.flatnonzero(readable), min(count, SAMPLE_PER_CLUSTER * k),
                                replace=False))
    centres = fit_centres(normalise(rows.rows(sample)), k, iterations, seed, cuda)
    index = flat_index(centres, "l2", cuda)
    for start, batch in _batches(rows):
        ok = readable[start:start + len(batch)]
        if ok.any():
            _, nearest = index.search(np.ascontiguousarray(batch[ok]), 1)
            ids[start + np.flatnonzero(ok)] = nearest[:, 0]
    return ids, k, len(sample)


def _batches(rows: PoolEmbeddings) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, unit-length float32 rows) in batches of :data:`BATCH_ROWS`."""
    for start in range(0, len(rows), BATCH_ROWS):
        stop = min(start + BATCH_ROWS, len(rows))
        yield start, normalise(rows.rows(np.arange(start, stop)))


def _shard_folder(folder: Path, pool_size: int) -> GroupEmbeddings:
    """A cached embeddings folder read back; the folder's name hashes the features and
    the pool, so it names the content."""
    return GroupEmbeddings(read_cached(folder, pool_size, OPTION), str(folder), folder.name,
                           folder)


def _npy_file(path: str, pool_size: int, cache_dir: Path) -> GroupEmbeddings:
    """``--features npy:PATH``: the user's file, checked; its assignments go in the cache
    (not next to the file, which may be read-only or shared)."""
    array = read_embeddings(path, pool_size, "pool")
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return GroupEmbeddings(PoolEmbeddings([array], max(1, pool_size), {}), str(resolved),
                           f"npy:{resolved}:{stat.st_size}:{stat.st_mtime_ns}", cache_dir)


__all__ = ["GroupEmbeddings", "assign_clusters", "cluster_assignment", "embeddings_at_select",
           "feature_grouping", "saved_embeddings", "wanted"]
