"""clustering-avg/min with --features: npy embeddings made by hand rank the target's part
of a two-part pool first; checkpoint features are cached once and reused; the default
(and --features-from) keep computing the paper's features on the fly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import selectkit
from selectkit import picked_families, random_backbone, two_part_npy, unit_rows

from condpretrain.config import SelectConfig
from condpretrain.scoring.clustering import reads_cached_embeddings
from condpretrain.selection import select

METHODS = ["clustering-avg", "clustering-min"]


def quick(**overrides) -> SelectConfig:
    return selectkit.quick(**{"clusters": 4, **overrides})


def picked(out: Path):
    return picked_families(out / "subset.csv")


@pytest.fixture(scope="module")
def npy_features(two_part_pool, stripes_target, tmp_path_factory) -> Path:
    return two_part_npy(two_part_pool, stripes_target, tmp_path_factory.mktemp("npy"),
                        seed=1, axes=(2, 5))


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> Path:
    return random_backbone(tmp_path_factory.mktemp("ckpt"))


def test_only_other_features_than_the_default_read_the_cache(backbone):
    assert not reads_cached_embeddings(quick())
    assert not reads_cached_embeddings(quick(features_from=str(backbone)))
    assert reads_cached_embeddings(quick(features="npy:x.npy"))
    assert reads_cached_embeddings(quick(features=f"checkpoint:{backbone}"))


@pytest.mark.parametrize("method", METHODS)
def test_npy_features_rank_the_targets_part_first(method, npy_features, two_part_pool,
                                                   stripes_target, tmp_path):
    select([str(two_part_pool)], str(stripes_target), tmp_path,
           quick(method=method, fraction=0.5, features=f"npy:{npy_features}",
                 cache_dir=str(tmp_path / "cache")))
    assert picked(tmp_path) == {"stripes": 48}
    scores = np.load(tmp_path / "scores.npy")
    assert scores.dtype == np.float32 and np.isfinite(scores).all()
    # npy features are the user's files: nothing is computed, so no target model either
    assert not list((tmp_path / "cache").glob("target-model-*"))


def test_clustering_min_score_is_minus_the_distance_to_the_nearest_centre(
        npy_features, two_part_pool, stripes_target, tmp_path):
    select([str(two_part_pool)], str(stripes_target), tmp_path,
           quick(method="clustering-min", count=1, clusters=1, features=f"npy:{npy_features}"))
    pool, target = unit_rows(npy_features)
    # one cluster: its centre is the mean of the target's unit rows
    expected = -np.linalg.norm(pool - target.mean(axis=0), axis=1)
    np.testing.assert_allclose(np.load(tmp_path / "scores.npy"), expected, atol=1e-4)


def test_checkpoint_features_are_cached_once_for_both_variants(backbone, two_part_pool,
                                                               stripes_target, tmp_path):
    cache = tmp_path / "cache"
    features = f"checkpoint:{backbone}"
    select([str(two_part_pool)], str(stripes_target), tmp_path / "avg",
           quick(method="clustering-avg", fraction=0.5, features=features, cache_dir=str(cache)))
    shards = {p: p.stat().st_mtime_ns for p in cache.glob("embeddings-*/*")}
    assert len(list(cache.glob("embeddings-*"))) == 1 and shards
    select([str(two_part_pool)], str(stripes_target), tmp_path / "min",
           quick(method="clustering-min", fraction=0.5, features=features, cache_dir=str(cache)))
    assert {p: p.stat().st_mtime_ns for p in cache.glob("embeddings-*/*")} == shards
    for out in ("avg", "min"):
        scores = np.load(tmp_path / out / "scores.npy")
        assert len(scores) == 96 and np.isfinite(scores).all()
        assert json.dumps(str(next(cache.glob("embeddings-*")))) in (
            tmp_path / out / "selection.json").read_text()


def test_features_from_keeps_computing_on_the_fly(backbone, two_part_pool, stripes_target,
                                                  tmp_path):
    cache = tmp_path / "cache"
    select([str(two_part_pool)], str(stripes_target), tmp_path / "out",
           quick(method="clustering-min", fraction=0.5, features_from=str(backbone),
                 cache_dir=str(cache)))
    assert np.isfinite(np.load(tmp_path / "out" / "scores.npy")).all()
    assert not list(cache.glob("embeddings-*"))
