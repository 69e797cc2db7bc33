"""--policy: how the budget is drawn from the scores (top, sample, balanced)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from condpretrain.config import SelectConfig, build_config
from condpretrain.errors import CondPretrainError
from condpretrain.policies import Draw, draw_budget, draw_recorded, policy_names
from condpretrain.selection import reselect, select

# A two-part pool: part A (the first 50) scores high, part B (the last 50) low.
PART_A, PART_B = np.arange(50), np.arange(50, 100)
TWO_PART = np.r_[np.full(50, 2.0), np.full(50, 0.0)].astype(np.float32)


def old_rank_pool(scores, budget, seed, exclude=None):
    """The selection before policies existed, verbatim: what ``top`` must still give."""
    scores = np.asarray(scores, dtype=np.float32)
    eligible = ~np.isnan(scores)
    if exclude is not None:
        eligible[exclude] = False
    scored = np.flatnonzero(eligible)
    budget = min(budget, len(scored))
    tiebreak = np.random.default_rng(seed).permutation(len(scores))
    order = np.lexsort((tiebreak[scored], -scores[scored]))
    return scored[order[:budget]]


def test_top_is_the_papers_selection_unchanged():
    rng = np.random.default_rng(0)
    for seed in range(5):
        scores = rng.integers(0, 5, 200).astype(np.float32)  # many ties
        scores[rng.choice(200, 10, replace=False)] = np.nan
        exclude = rng.choice(200, 7, replace=False)
        got = draw_budget("top", scores, Draw(30, seed, exclude))
        assert got.tolist() == old_rank_pool(scores, 30, seed, exclude).tolist()
    assert policy_names()[0] == "top" and SelectConfig().policy == "top"


def test_sample_draws_the_budget_without_duplicates_deterministically():
    draw = Draw(20, seed=4)
    first = draw_budget("sample", TWO_PART, draw)
    assert len(first) == 20 and len(set(first.tolist())) == 20
    assert first.tolist() == draw_budget("sample", TWO_PART, draw).tolist()
    assert first.tolist() != draw_budget("sample", TWO_PART, Draw(20, seed=5)).tolist()
    scores = TWO_PART[first]
    assert np.all(np.diff(scores) <= 0)  # written best first, like every subset


def test_sample_favours_high_scores_but_not_only():
    taken_from_b = [np.isin(draw_budget("sample", TWO_PART, Draw(10, seed)), PART_B).sum()
                    for seed in range(200)]
    share_b = sum(taken_from_b) / (10 * 200)
    # weights e^2 : 1, so about 1 draw in 8.4 from B at first, a little more as A thins
    assert 0.05 < share_b < 0.25
    cold = [np.isin(draw_budget("sample", TWO_PART, Draw(10, seed, temperature=0.05)),
                    PART_B).sum() for seed in range(50)]
    assert sum(cold) == 0  # a low temperature is top


def test_sample_never_draws_unscored_or_excluded_images():
    scores = TWO_PART.copy()
    scores[:45] = np.nan
    chosen = draw_budget("sample", scores, Draw(60, seed=0, exclude=np.arange(45, 50)))
    assert len(chosen) == 50 and set(chosen.tolist()) == set(PART_B.tolist())


def test_balanced_caps_each_group():
    groups = np.r_[np.zeros(50, int), np.ones(50, int)]
    chosen = draw_budget("balanced", TWO_PART, Draw(10, seed=0, groups=groups))
    assert np.isin(chosen, PART_A).sum() == 5 and np.isin(chosen, PART_B).sum() == 5
    assert draw_budget("top", TWO_PART, Draw(10, seed=0)).tolist() != chosen.tolist()
    # a group smaller than the cap leaves room, filled top-first
    small_b = np.r_[np.zeros(98, int), np.ones(2, int)]
    chosen = draw_budget("balanced", TWO_PART, Draw(10, seed=0, groups=small_b))
    assert np.isin(chosen, [98, 99]).sum() == 2 and len(set(chosen.tolist())) == 10
    assert np.all(np.diff(TWO_PART[chosen]) <= 0)


def test_balanced_groups_by_labels_then_pools_and_says_so():
    scores = TWO_PART
    labels = ["a"] * 50 + ["b"] * 50
    chosen, record = draw_recorded("balanced", scores, Draw(6, 0), labels, ["p"] * 100)
    assert record["groups"]["from"] == "labels" and record["groups"]["cap"] == 3
    assert np.isin(chosen, PART_B).sum() == 3
    _, record = draw_recorded("balanced", scores, Draw(6, 0), [""] * 100, labels)
    assert record["groups"]["from"] == "pools"
    chosen, record = draw_recorded("balanced", scores, Draw(6, 0), [""] * 100, ["p"] * 100)
    assert record["groups"]["from"] == "none" and "equals top" in record["groups"]["note"]
    assert chosen.tolist() == draw_budget("top", scores, Draw(6, 0)).tolist()


def test_policy_is_an_option_recorded_in_selection_json(two_part_pool, stripes_target,
                                                         tmp_path):
    config = build_config(SelectConfig, "quick", method="random", count=12, seed=1,
                          device="cpu")
    select([str(two_part_pool)], str(stripes_target), tmp_path / "top", config)
    top = json.loads((tmp_path / "top" / "selection.json").read_text())
    assert top["policy"] == {"name": "top"}
    # re-drawing with top gives the very subset select wrote
    reselect(tmp_path / "top", tmp_path / "again", count=12, policy="top")
    assert (tmp_path / "again" / "subset.csv").read_bytes() == \
        (tmp_path / "top" / "subset.csv").read_bytes()
    reselect(tmp_path / "top", tmp_path / "bal", count=8, policy="balanced")
    meta = json.loads((tmp_path / "bal" / "selection.json").read_text())
    assert meta["policy"]["groups"]["from"] == "labels" and meta["policy"]["groups"]["cap"] == 2
    labels = [line.split(",")[1] for line in
              (tmp_path / "bal" / "subset.csv").read_text().splitlines()[1:]]
    assert sorted(labels.count(name) for name in set(labels)) == [2, 2, 2, 2]
    reselect(tmp_path / "top", tmp_path / "smp", count=8, policy="sample", temperature=0.5)
    meta = json.loads((tmp_path / "smp" / "selection.json").read_text())
    assert meta["policy"] == {"name": "sample", "temperature": 0.5}
    assert meta["parameters"]["policy"] == "sample"


def test_bad_policy_or_temperature_is_a_one_line_error():
    with pytest.raises(CondPretrainError, match="--policy must be one of top, sample, balanced"):
        build_config(SelectConfig, "paper", policy="best")
    with pytest.raises(CondPretrainError, match="--temperature must be positive"):
        build_config(SelectConfig, "paper", temperature=0)
