"""knn and density-ratio on a two-part pool: npy features made by hand, then the
target-trained model's features end to end, computed once and shared."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from selectkit import picked_families, quick, two_part_npy, unit_rows

from condpretrain.errors import CondPretrainError
from condpretrain.scoring import SCORERS
from condpretrain.selection import select

METHODS = ["knn", "density-ratio"]


@pytest.fixture(scope="module")
def hand_made_npy(two_part_pool, stripes_target, tmp_path_factory) -> Path:
    return two_part_npy(two_part_pool, stripes_target, tmp_path_factory.mktemp("npy"))


def test_registered_after_the_papers_methods_with_labels():
    names = SCORERS.names()
    assert names[-2:] == METHODS
    assert [SCORERS.label(n) for n in METHODS] == ["k-NN (emb.)", "Density ratio (emb.)"]


@pytest.mark.parametrize("method", METHODS)
def test_npy_features_rank_the_targets_part_first(method, hand_made_npy, two_part_pool,
                                                   stripes_target, tmp_path):
    select([str(two_part_pool)], str(stripes_target), tmp_path,
           quick(method=method, fraction=0.5, features=f"npy:{hand_made_npy}"))
    assert picked_families(tmp_path / "subset.csv") == {"stripes": 48}
    scores = np.load(tmp_path / "scores.npy")
    assert scores.dtype == np.float32 and np.isfinite(scores).all()


def test_knn_score_is_the_mean_cosine_to_the_k_nearest(hand_made_npy, two_part_pool,
                                                       stripes_target, tmp_path):
    select([str(two_part_pool)], str(stripes_target), tmp_path,
           quick(method="knn", count=1, knn_k=3, features=f"npy:{hand_made_npy}"))
    pool, target = unit_rows(hand_made_npy)
    expected = np.sort(pool @ target.T, axis=1)[:, -3:].mean(axis=1)
    np.testing.assert_allclose(np.load(tmp_path / "scores.npy"), expected, atol=1e-5)


def test_misaligned_npy_is_a_one_line_error(hand_made_npy, two_part_pool, stripes_target,
                                            tmp_path):
    short = tmp_path / "short.npy"
    np.save(short, np.load(hand_made_npy)[:-1])
    np.save(tmp_path / "short.target.npy", np.load(hand_made_npy.with_name("emb.target.npy")))
    with pytest.raises(CondPretrainError, match=f"^--features: {short} has 95 rows") as info:
        select([str(two_part_pool)], str(stripes_target), tmp_path / "out",
               quick(method="knn", fraction=0.5, features=f"npy:{short}"))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("method", METHODS)
def test_classic_features_rank_the_targets_part_first(method, two_part_pool, stripes_target,
                                                      tmp_path):
    select([str(two_part_pool)], str(stripes_target), tmp_path,
           quick(method=method, fraction=0.5, features="classic"))
    assert picked_families(tmp_path / "subset.csv") == {"stripes": 48}
    record = json.loads((tmp_path / "selection.json").read_text())
    assert record["models"]["features"]["from"] == "classic"
    assert np.isfinite(np.load(tmp_path / "scores.npy")).all()


# ------------------------------------------------------ target-trained features, end to end


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def runs(two_part_pool, stripes_target, cache, tmp_path_factory) -> dict[str, Path]:
    """knn, then density-ratio, then knn at another budget, sharing one cache folder;
    the shards' modification times are noted after the first run."""
    outs: dict[str, Path] = {}
    for name, method, budget in [("knn", "knn", {"fraction": 0.5}),
                                 ("density-ratio", "density-ratio", {"fraction": 0.5}),
                                 ("knn-count", "knn", {"count": 10})]:
        outs[name] = tmp_path_factory.mktemp(name)
        select([str(two_part_pool)], str(stripes_target), outs[name],
               quick(method=method, cache_dir=str(cache), **budget))
        if name == "knn":
            outs["mtimes"] = {p: p.stat().st_mtime_ns for p in cache.glob("embeddings-*/*")}
    return outs


@pytest.mark.parametrize("method", METHODS)
def test_target_features_rank_the_targets_part_first(runs, method):
    picked = picked_families(runs[method] / "subset.csv")
    assert picked["stripes"] > 40, picked  # of 48: the part that looks like the target


def test_pool_embeddings_are_computed_once_and_reused(runs, cache):
    folders = list(cache.glob("embeddings-*"))
    assert len(folders) == 1
    assert {p: p.stat().st_mtime_ns for p in cache.glob("embeddings-*/*")} == runs["mtimes"]
    shared = {name: {m["key"]: m for m in json.loads(
        (runs[name] / "selection.json").read_text())["cost"]["shared"]}
        for name in ("knn", "density-ratio", "knn-count")}
    key = folders[0].name
    assert shared["knn"][key]["trained_here"] is True
    assert shared["density-ratio"][key]["trained_here"] is False
    assert shared["knn-count"][key]["trained_here"] is False
    # every method that read them is charged what computing them took
    assert shared["knn"][key]["seconds"] == shared["density-ratio"][key]["seconds"] > 0


def test_a_method_may_name_its_features(two_part_pool, stripes_target, tmp_path):
    """``--method knn@classic`` is ``--method knn --features classic`` (the features named
    with the method win)."""
    config = quick(method="knn@classic", fraction=0.5, features="target")
    assert (config.method, config.features) == ("knn", "classic")
    select([str(two_part_pool)], str(stripes_target), tmp_path / "named", config)
    select([str(two_part_pool)], str(stripes_target), tmp_path / "flag",
           quick(method="knn", fraction=0.5, features="classic"))
    np.testing.assert_array_equal(np.load(tmp_path / "named" / "scores.npy"),
                                  np.load(tmp_path / "flag" / "scores.npy"))
    record = json.loads((tmp_path / "named" / "selection.json").read_text())
    assert (record["method"], record["parameters"]["features"]) == ("knn", "classic")
    with pytest.raises(CondPretrainError, match="unknown method 'nope'"):
        quick(method="nope@classic")
