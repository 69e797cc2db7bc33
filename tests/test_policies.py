"""--policy: how the budget is drawn from the scores (top, sample, balanced)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from condpretrain import groups
from condpretrain.config import SelectConfig, build_config
from condpretrain.data.sources import open_pool, open_target
from condpretrain.errors import CondPretrainError
from condpretrain.features.embeddings import PoolEmbeddings
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


# --balance-by features ------------------------------------------------------------------


def near_duplicates(seed: int = 0) -> np.ndarray:
    """Embeddings of the two-part pool: part A's rows near one axis, part B's near another,
    each part a pile of near-duplicates."""
    rng = np.random.default_rng(seed)
    axes = np.eye(8, dtype=np.float32)
    rows = np.r_[np.tile(axes[0], (50, 1)), np.tile(axes[1], (50, 1))]
    return rows + rng.normal(0, 0.05, rows.shape).astype(np.float32)


def in_memory(rows: np.ndarray, cache: Path) -> groups.GroupEmbeddings:
    return groups.GroupEmbeddings(PoolEmbeddings([rows], len(rows), {}), "test rows",
                                  f"test:{rows.tobytes().hex()[:32]}", cache)


def balance_config(**overrides) -> SelectConfig:
    settings = {"device": "cpu", "policy": "balanced", "balance_by": "features",
                "balance_clusters": 2, **overrides}
    return build_config(SelectConfig, "quick", **settings)


def test_balanced_by_features_draws_from_both_clusters_while_top_draws_from_one(tmp_path):
    grouping = groups.feature_grouping(in_memory(near_duplicates(), tmp_path), balance_config())
    assert set(grouping.ids[PART_A].tolist()) | set(grouping.ids[PART_B].tolist()) == {0, 1}
    assert len(set(grouping.ids[PART_A].tolist())) == 1  # a pile of near-duplicates: one group
    unlabelled, one_pool = [""] * 100, ["p"] * 100
    chosen, record = draw_recorded("balanced", TWO_PART, Draw(10, 0), unlabelled, one_pool,
                                   "features", grouping)
    assert np.isin(chosen, PART_A).sum() == 5 and np.isin(chosen, PART_B).sum() == 5
    assert record["groups"]["from"] == "features" and record["groups"]["by"] == "features"
    assert record["groups"]["clusters"] == 2 and record["groups"]["count"] == 2
    assert record["groups"]["cap"] == 5
    assert np.isin(draw_budget("top", TWO_PART, Draw(10, 0)), PART_A).all()
    # without features, this pool is a single group: balanced is top
    chosen, record = draw_recorded("balanced", TWO_PART, Draw(10, 0), unlabelled, one_pool)
    assert record["groups"]["from"] == "none" and np.isin(chosen, PART_A).all()


def test_rows_without_embeddings_are_in_no_group_and_k_clamps_with_a_warning(tmp_path,
                                                                            caplog):
    rows = near_duplicates()[:20].copy()
    rows[[3, 7]] = np.nan  # unreadable images: NaN embeddings (and NaN scores)
    ids, used, sample = groups.assign_clusters(PoolEmbeddings([rows], 20, {}), 500, 5, 0)
    assert used == 18 and sample == 18
    assert "only 18 pool images have embeddings: using K=18 clusters instead of 500" in \
        caplog.text
    assert ids[3] == ids[7] == -1 and sorted(ids[ids >= 0].tolist()) == list(range(18))
    scores = np.arange(20, dtype=np.float32)
    scores[[3, 7]] = np.nan
    grouping = groups.Grouping(ids, "features")
    chosen, record = draw_recorded("balanced", scores, Draw(30, 0), [""] * 20, ["p"] * 20,
                                   "features", grouping)
    assert len(chosen) == 18 and not np.isin(chosen, [3, 7]).any()
    assert record["groups"]["count"] == 18 and record["groups"]["cap"] == 1


def test_the_assignment_is_computed_once_and_reused(tmp_path, monkeypatch):
    calls = []
    assign = groups.assign_clusters
    monkeypatch.setattr(groups, "assign_clusters",
                        lambda *args: calls.append(args) or assign(*args))
    source = in_memory(near_duplicates(), tmp_path)
    first = groups.feature_grouping(source, balance_config())
    again = groups.feature_grouping(source, balance_config(count=30))  # another budget
    assert len(calls) == 1 and again.ids.tolist() == first.ids.tolist()
    assert len(list(tmp_path.glob("groups-*.npy"))) == 1
    groups.feature_grouping(source, balance_config(seed=1))  # another seed: its own k-means
    groups.feature_grouping(source, balance_config(balance_clusters=3))
    assert len(calls) == 3 and len(list(tmp_path.glob("groups-*.npy"))) == 3


def two_part_npy(pool_root: Path, target_root: Path, folder: Path) -> Path:
    """npy features of the two-part pool: stripes near one axis, noise near another, the
    target's rows near the stripes axis (so knn ranks every stripes image first)."""
    rng = np.random.default_rng(0)
    stripes, noise = np.eye(8, dtype=np.float32)[:2]
    rows = np.array([stripes if "/stripes" in p else noise
                     for p in open_pool([str(pool_root)]).paths])
    path = folder / "emb.npy"
    np.save(path, rows + rng.normal(0, 0.05, rows.shape).astype(np.float32))
    n_target = len(open_target(str(target_root)).train)
    np.save(folder / "emb.target.npy",
            stripes + rng.normal(0, 0.05, (n_target, 8)).astype(np.float32))
    return path


def families(folder: Path) -> dict[str, int]:
    labels = [line.split(",")[1].split("_")[0]
              for line in (folder / "subset.csv").read_text().splitlines()[1:]]
    return {name: labels.count(name) for name in sorted(set(labels))}


def test_select_and_reselect_balance_by_npy_features(two_part_pool, stripes_target,
                                                     tmp_path):
    npy = two_part_npy(two_part_pool, stripes_target, tmp_path)
    config = build_config(SelectConfig, "quick", method="knn", count=12, device="cpu",
                          features=f"npy:{npy}")
    select([str(two_part_pool)], str(stripes_target), tmp_path / "top", config)
    assert families(tmp_path / "top") == {"stripes": 12}
    select([str(two_part_pool)], str(stripes_target), tmp_path / "bal",
           balance_config(method="knn", count=12, features=f"npy:{npy}"))
    assert families(tmp_path / "bal") == {"noise": 6, "stripes": 6}
    record = json.loads((tmp_path / "bal" / "selection.json").read_text())["policy"]
    assert record["groups"]["from"] == "features" and record["groups"]["clusters"] == 2
    assert record["groups"]["embeddings"] == str(npy.resolve())
    # from the saved scores of the top selection, at another budget
    reselect(tmp_path / "top", tmp_path / "re", count=8, policy="balanced",
             balance_by="features", balance_clusters=2)
    assert families(tmp_path / "re") == {"noise": 4, "stripes": 4}
    # labels would have made four groups (two classes in each part)
    reselect(tmp_path / "top", tmp_path / "labels", count=8, policy="balanced")
    assert families(tmp_path / "labels") == {"noise": 4, "stripes": 4}
    meta = json.loads((tmp_path / "labels" / "selection.json").read_text())
    assert meta["policy"]["groups"]["from"] == "labels" and meta["policy"]["groups"]["count"] == 4


def test_features_computed_for_grouping_are_recorded_and_reused_by_reselect(
        two_part_pool, stripes_target, tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from condpretrain.models import build_resnet, save_backbone

    torch.manual_seed(0)
    save_backbone(build_resnet("resnet10"), tmp_path / "backbone.pt")
    calls = []
    assign = groups.assign_clusters
    monkeypatch.setattr(groups, "assign_clusters",
                        lambda *args: calls.append(args) or assign(*args))
    # random scores read no embeddings: grouping computes them through the features layer
    config = balance_config(method="random", count=12, balance_clusters=4,
                            features=f"checkpoint:{tmp_path / 'backbone.pt'}")
    select([str(two_part_pool)], str(stripes_target), tmp_path / "sel", config)
    meta = json.loads((tmp_path / "sel" / "selection.json").read_text())
    folder = Path(meta["models"]["embeddings"]["path"])
    assert folder.name.startswith("embeddings-") and meta["policy"]["groups"]["embeddings"] == \
        str(folder)
    assert any(str(folder) in model["path"] for model in meta["cost"]["shared"])
    assert len(list(folder.glob("groups-*.npy"))) == 1  # cached next to the embeddings
    for count in (6, 20):
        reselect(tmp_path / "sel", tmp_path / f"re{count}", count=count)
        again = json.loads((tmp_path / f"re{count}" / "selection.json").read_text())
        assert again["policy"]["groups"]["from"] == "features"
    assert len(calls) == 1


def test_balance_by_errors_are_one_line(two_part_pool, stripes_target, tmp_path):
    config = build_config(SelectConfig, "quick", method="random", count=6, device="cpu")
    select([str(two_part_pool)], str(stripes_target), tmp_path / "sel", config)
    with pytest.raises(CondPretrainError, match=r"--balance-by features: .*recorded no pool "
                       r"embeddings.*run select with .*--features"):
        reselect(tmp_path / "sel", tmp_path / "re", count=6, policy="balanced",
                 balance_by="features")
    with pytest.raises(CondPretrainError, match="--balance-by must be one of auto, labels, "
                       "pools, features"):
        build_config(SelectConfig, "paper", balance_by="images")
    with pytest.raises(CondPretrainError, match="--balance-clusters"):
        build_config(SelectConfig, "paper", balance_clusters=1)
    with pytest.raises(CondPretrainError, match="--balance-by labels: 100 of 100 pool images "
                       "have no label"):
        draw_recorded("balanced", TWO_PART, Draw(6, 0), [""] * 100, ["p"] * 100, "labels")
    _, record = draw_recorded("balanced", TWO_PART, Draw(6, 0), [""] * 100,
                              ["a"] * 50 + ["b"] * 50, "pools")
    assert record["groups"]["from"] == "pools" and record["groups"]["cap"] == 3
