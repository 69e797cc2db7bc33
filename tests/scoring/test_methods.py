"""Every method on a pool of two distinct parts, where the target resembles one part."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from selectkit import picked_families, quick

from condpretrain.errors import CondPretrainError
from condpretrain.scoring import SCORERS
from condpretrain.selection import select

HALF = 0.5  # the stripes part is exactly half the pool


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def run_method(two_part_pool, stripes_target, cache, tmp_path_factory):
    results = {}

    def run(method: str) -> Path:
        if method not in results:
            out = tmp_path_factory.mktemp(method)
            select([str(two_part_pool)], str(stripes_target), out,
                   quick(method=method, fraction=HALF, cache_dir=str(cache)))
            results[method] = out
        return results[method]

    return run


@pytest.mark.parametrize("method", ["domain-classifier", "clustering-avg", "clustering-min"])
def test_relevant_part_is_selected_first(run_method, method):
    assert picked_families(run_method(method) / "subset.csv") == {"stripes": 48}


def test_random_does_not_prefer_the_relevant_part(run_method):
    picked = picked_families(run_method("random") / "subset.csv")
    assert 12 <= picked["stripes"] <= 36 and 12 <= picked["noise"] <= 36


def test_active_learning_orders_are_opposite(run_method):
    high = np.load(run_method("active-learning") / "scores.npy")
    low = np.load(run_method("inverse-active-learning") / "scores.npy")
    np.testing.assert_allclose(high, -low, rtol=1e-5, atol=1e-6)
    assert (high >= 0).all()  # entropies
    high_picked = set(open(run_method("active-learning") / "subset.csv").read().splitlines()[1:])
    low_picked = set(open(run_method("inverse-active-learning") / "subset.csv").read().splitlines()[1:])
    assert not {r.split(",")[0] for r in high_picked} & {r.split(",")[0] for r in low_picked}


def test_target_model_is_trained_once_and_shared(run_method, cache):
    run_method("active-learning")
    run_method("clustering-avg")
    assert len(list(cache.glob("target-model-*.pt"))) == 1


def test_scores_are_aligned_with_pool_csv(run_method, two_part_pool):
    out = run_method("domain-classifier")
    scores = np.load(out / "scores.npy")
    with open(out / "pool.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert scores.dtype == np.float32 and len(scores) == len(rows) == 96
    by_family = {"stripes": [], "noise": []}
    for row, score in zip(rows, scores, strict=True):
        by_family[row["label"].split("_")[0]].append(score)
    assert min(by_family["stripes"]) > max(by_family["noise"])


def test_every_registered_method_has_a_summary():
    assert set(SCORERS) == {"random", "domain-classifier", "clustering-avg", "clustering-min",
                            "active-learning", "inverse-active-learning", "knn",
                            "density-ratio"}
    assert all(cls.summary for cls in SCORERS.values())


def test_same_seed_same_subset_byte_for_byte(two_part_pool, stripes_target, tmp_path):
    outputs = []
    for run in ("a", "b"):
        select([str(two_part_pool)], str(stripes_target), tmp_path / run,
               quick(method="domain-classifier", fraction=0.25))
        outputs.append((tmp_path / run / "subset.csv").read_bytes())
    assert outputs[0] == outputs[1]


def test_unlabelled_target(two_part_pool, stripes_target, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in sorted((stripes_target / "train" / "warm").iterdir()):
        (flat / path.name).write_bytes(path.read_bytes())
    select([str(two_part_pool)], str(flat), tmp_path / "dc",
           quick(method="domain-classifier", fraction=HALF))
    assert picked_families(tmp_path / "dc" / "subset.csv") == {"stripes": 48}
    with pytest.raises(CondPretrainError, match="needs a labelled target"):
        select([str(two_part_pool)], str(flat), tmp_path / "al",
               quick(method="active-learning", fraction=HALF))
    with pytest.raises(CondPretrainError, match="--features-from"):
        select([str(two_part_pool)], str(flat), tmp_path / "cl",
               quick(method="clustering-min", fraction=HALF))


def test_clustering_with_features_from_checkpoint(two_part_pool, stripes_target, tmp_path):
    """--features-from: a given backbone's features, no target training (works unlabelled)."""
    import torch

    from condpretrain.models import build_resnet, save_backbone

    torch.manual_seed(0)
    ckpt = tmp_path / "backbone.pt"
    save_backbone(build_resnet("resnet10"), ckpt)
    result = select([str(two_part_pool)], str(stripes_target), tmp_path / "out",
                    quick(method="clustering-min", fraction=HALF, features_from=str(ckpt)))
    assert result.selected == 48
    assert not list((tmp_path / "out").glob("cache/target-model-*"))
    import json

    models = json.loads((tmp_path / "out" / "selection.json").read_text())["models"]
    assert models["features"] == {"from": str(ckpt), "arch": "resnet10"}


def test_clusters_clamped_to_target_size(two_part_pool, stripes_target, tmp_path, caplog):
    select([str(two_part_pool)], str(stripes_target), tmp_path,
           quick(method="clustering-avg", fraction=HALF, clusters=500))
    assert "using K=32 clusters instead of 500" in caplog.text
