from __future__ import annotations

import json

import numpy as np
import pytest

from condpretrain.config import SelectConfig, build_config
from condpretrain.errors import CondPretrainError
from condpretrain.selection import budget_size, rank_pool, reselect, select


def test_rank_pool_orders_best_first_and_skips_nan():
    scores = np.array([0.1, np.nan, 0.9, 0.5, np.nan], dtype=np.float32)
    assert rank_pool(scores, 3, seed=0).tolist() == [2, 3, 0]
    assert rank_pool(scores, 10, seed=0).tolist() == [2, 3, 0]  # clamped to the scored


def test_ties_are_broken_by_seed_deterministically():
    scores = np.zeros(100, dtype=np.float32)
    first = rank_pool(scores, 10, seed=1)
    assert first.tolist() == rank_pool(scores, 10, seed=1).tolist()
    assert first.tolist() != rank_pool(scores, 10, seed=2).tolist()
    assert first.tolist() != list(range(10))


def test_budget_size():
    assert budget_size(1000, 0.06, None) == 60
    assert budget_size(1000, None, 7) == 7
    assert budget_size(3, 0.01, None) == 1
    with pytest.raises(CondPretrainError, match="budget"):
        budget_size(10, None, None)


def test_reselect_from_saved_scores(two_part_pool, stripes_target, tmp_path):
    config = build_config(SelectConfig, "quick", method="clustering-min", fraction=0.5, device="cpu")
    select([str(two_part_pool)], str(stripes_target), tmp_path / "a", config)
    result = reselect(tmp_path / "a", tmp_path / "b", fraction=0.25)
    assert result.selected == 24
    full = (tmp_path / "a" / "subset.csv").read_text().splitlines()
    part = (tmp_path / "b" / "subset.csv").read_text().splitlines()
    assert part == full[:25]  # header + the 24 best: the same ranking, a smaller budget
    meta = json.loads((tmp_path / "b" / "selection.json").read_text())
    assert meta["scores_from"] == str(tmp_path / "a") and meta["parameters"]["fraction"] == 0.25
    again = reselect(tmp_path / "b", tmp_path / "c", count=5)  # a reselection reselects too
    assert again.selected == 5


def test_reselect_needs_a_selection_folder(tmp_path):
    with pytest.raises(CondPretrainError, match="not a selection folder"):
        reselect(tmp_path, tmp_path / "out", fraction=0.1)


def test_selection_json_records_the_run(two_part_pool, stripes_target, tmp_path):
    config = build_config(SelectConfig, "quick", method="random", count=10, seed=3, device="cpu")
    select([f"mine={two_part_pool}"], str(stripes_target), tmp_path, config)
    meta = json.loads((tmp_path / "selection.json").read_text())
    assert meta["method"] == "random" and meta["seed"] == 3 and meta["selected"] == 10
    assert meta["pools"] == {"mine": 96} and meta["target_sizes"]["train"] == 32
    assert {"index", "fit", "score", "select", "total"} <= set(meta["timings"])
    assert {"torch", "torchvision", "faiss", "numpy"} <= set(meta["versions"])
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries
