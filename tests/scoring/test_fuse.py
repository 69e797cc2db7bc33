"""--method fuse:A,B: reciprocal-rank fusion of saved scores, checked against its formula."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from condpretrain import atomic
from condpretrain.config import SelectConfig, build_config
from condpretrain.data.sources import ImageIndex, write_index_csv
from condpretrain.errors import CondPretrainError
from condpretrain.scoring.fuse import descending_ranks, reciprocal_rank_fusion
from condpretrain.selection import reselect, select

PATHS = [f"/pool/img{i}.png" for i in range(6)]
SCORES_A = [0.9, 0.8, 0.7, 0.1, 0.5, 0.5]
SCORES_B = [-3.0, -1.0, -2.0, -0.5, -9.0, -4.0]  # another scale: only ranks count


def saved_selection(folder: Path, method: str, scores: list[float],
                    paths: list[str] | None = None, target: str = "t",
                    features: str = "target") -> Path:
    """A finished selection folder written by hand (no images needed: nothing re-scores)."""
    paths = paths or PATHS
    folder.mkdir(parents=True)
    write_index_csv(folder / "pool.csv", ImageIndex(paths, ["x"] * len(paths),
                                                    ["p"] * len(paths)))
    atomic.save_npy(folder / "scores.npy", np.asarray(scores, dtype=np.float32))
    atomic.write_json(folder / "selection.json", {
        "method": method, "parameters": {"method": method, "features": features},
        "target": target,
        "cost": {"seconds": 2.0, "device_hours": 0.5}})
    return folder


def fused_config(fuse_from: str, **values) -> SelectConfig:
    return build_config(SelectConfig, "paper", method="fuse:random,clustering-min",
                        fuse_from=fuse_from, **values)


def test_ranks_are_one_based_descending_with_shared_ties_and_nan():
    ranks = descending_ranks(np.array([0.5, 0.9, 0.5, np.nan, 0.1]))
    assert ranks[[0, 1, 2, 4]].tolist() == [2, 1, 2, 4] and np.isnan(ranks[3])


def test_fusion_is_the_formula():
    fused = reciprocal_rank_fusion([np.array(SCORES_A), np.array(SCORES_B)], k=60)
    rank_a = [1, 2, 3, 6, 4, 4]  # 0.5 twice: both rank 4
    rank_b = [4, 2, 3, 1, 6, 5]  # -0.5 is the highest
    expected = [1 / (60 + a) + 1 / (60 + b) for a, b in zip(rank_a, rank_b, strict=True)]
    assert fused == pytest.approx(np.array(expected, dtype=np.float32))
    assert reciprocal_rank_fusion([np.array(SCORES_A)], k=0)[0] == pytest.approx(1.0)


def test_select_fuses_saved_scores_without_scoring(tmp_path):
    a = saved_selection(tmp_path / "a", "random", SCORES_A)
    # the same images listed in another order: aligned by path
    order = [3, 0, 5, 1, 4, 2]
    b = saved_selection(tmp_path / "b", "clustering-min", [SCORES_B[i] for i in order],
                        [PATHS[i] for i in order])
    result = select([], None, tmp_path / "out", fused_config(f"{a},{b}", count=2, fuse_k=1))
    rank_a, rank_b = [1, 2, 3, 6, 4, 4], [4, 2, 3, 1, 6, 5]
    expected = np.array([1 / (1 + x) + 1 / (1 + y) for x, y in zip(rank_a, rank_b,
                                                                   strict=True)], np.float32)
    saved = np.load(tmp_path / "out" / "scores.npy")
    assert saved == pytest.approx(expected)  # in the first method's pool order
    subset = (tmp_path / "out" / "subset.csv").read_text().splitlines()[1:]
    best = np.argsort(-expected, kind="stable")[:2]
    assert [line.split(",")[0] for line in subset] == [PATHS[i] for i in best]
    meta = json.loads((tmp_path / "out" / "selection.json").read_text())
    assert meta["method"] == "fuse:random,clustering-min" and result.selected == 2
    assert meta["fused"] == {"random": str(a), "clustering-min": str(b)}
    assert meta["cost"]["seconds"] >= 4.0  # charged both fused selections' costs
    # a fused selection is a selection: it reselects with another budget and policy
    assert reselect(tmp_path / "out", tmp_path / "again", count=3).selected == 3


def test_another_pool_is_a_one_line_error_naming_the_folder(tmp_path):
    a = saved_selection(tmp_path / "a", "random", SCORES_A)
    other = [*PATHS[:5], "/pool/elsewhere.png"]
    b = saved_selection(tmp_path / "b", "clustering-min", SCORES_B, other)
    with pytest.raises(CondPretrainError) as error:
        select([], None, tmp_path / "out", fused_config(f"{a},{b}", count=2))
    message = str(error.value)
    assert str(b) in message and "--fuse-from" in message and "\n" not in message
    assert not (tmp_path / "out" / "selection.json").exists()


def test_a_missing_method_or_another_target_is_refused(tmp_path):
    a = saved_selection(tmp_path / "a", "random", SCORES_A)
    c = saved_selection(tmp_path / "c", "domain-classifier", SCORES_B)
    with pytest.raises(CondPretrainError, match="domain-classifier.*does not fuse"):
        select([], None, tmp_path / "out", fused_config(f"{a},{c}", count=2))
    with pytest.raises(CondPretrainError, match="no folder holds the scores of 'clustering-min'"):
        select([], None, tmp_path / "out", fused_config(f"{a}", count=2))
    d = saved_selection(tmp_path / "d", "clustering-min", SCORES_B, target="other")
    with pytest.raises(CondPretrainError, match="target"):
        select([], None, tmp_path / "out", fused_config(f"{a},{d}", count=2))


def test_fuse_parses_as_a_method_and_checks_its_parts():
    config = build_config(SelectConfig, "paper", method="fuse: random, clustering-min",
                          fuse_from="x")
    assert config.method == "fuse:random,clustering-min"
    for bad, words in (("fuse:random,nope", "unknown method 'nope'"),
                       ("fuse:random", "two or more"), ("fuse:random,random", "two or more")):
        with pytest.raises(CondPretrainError, match=words):
            build_config(SelectConfig, "paper", method=bad, fuse_from="x")
    with pytest.raises(CondPretrainError, match="--fuse-from"):
        build_config(SelectConfig, "paper", method="fuse:random,clustering-min")
    with pytest.raises(CondPretrainError, match="--method must be one of"):
        build_config(SelectConfig, "paper", method="no-such-method")


def views_config(fuse_from: str, method: str) -> SelectConfig:
    return build_config(SelectConfig, "paper", method=method, fuse_from=fuse_from, count=2,
                        fuse_k=1)


def test_one_method_fuses_over_two_views_named_by_their_features(tmp_path):
    colour = saved_selection(tmp_path / "colour", "knn", SCORES_A, features="classic")
    grey = saved_selection(tmp_path / "grey", "knn", SCORES_B,
                           features="classic:layout+gradients")
    method = "fuse:knn@classic,knn@classic:layout+gradients"
    select([], None, tmp_path / "out", views_config(f"{grey},{colour}", method))
    rank_a, rank_b = [1, 2, 3, 6, 4, 4], [4, 2, 3, 1, 6, 5]
    expected = [1 / (1 + x) + 1 / (1 + y) for x, y in zip(rank_a, rank_b, strict=True)]
    assert np.load(tmp_path / "out" / "scores.npy") == pytest.approx(np.float32(expected))
    meta = json.loads((tmp_path / "out" / "selection.json").read_text())
    assert meta["method"] == method
    assert list(meta["fused"].items()) == [("knn@classic", str(colour)),
                                           ("knn@classic:layout+gradients", str(grey))]
    assert set(meta["cost"]["fused"]) == set(meta["fused"])


def test_parts_that_do_not_tell_two_folders_apart_are_refused(tmp_path):
    colour = saved_selection(tmp_path / "colour", "knn", SCORES_A, features="classic")
    grey = saved_selection(tmp_path / "grey", "knn", SCORES_B,
                           features="classic:layout+gradients")
    random = saved_selection(tmp_path / "random", "random", SCORES_B)
    with pytest.raises(CondPretrainError, match="more than one folder holds the scores of "
                                                "'knn'") as error:
        select([], None, tmp_path / "out", views_config(f"{colour},{grey}", "fuse:knn,random"))
    assert "\n" not in str(error.value)
    with pytest.raises(CondPretrainError, match=f"{colour} answers both 'knn@classic' and "
                                                "'knn'"):
        select([], None, tmp_path / "out",
               views_config(f"{colour},{random}", "fuse:knn@classic,knn,random"))
    with pytest.raises(CondPretrainError, match="no folder holds the scores of 'knn@timm:x'"):
        select([], None, tmp_path / "out",
               views_config(f"{random}", "fuse:knn@timm:x,random"))
    with pytest.raises(CondPretrainError, match=f"{grey} holds the scores of 'knn' on "
                                                "--features classic:layout"):
        select([], None, tmp_path / "out",
               views_config(f"{colour},{grey},{random}", "fuse:knn@classic,random"))
    with pytest.raises(CondPretrainError, match="unknown method 'nope'"):
        views_config("x", "fuse:nope@classic,knn")
    assert not (tmp_path / "out" / "selection.json").exists()


def test_fuse_from_the_command_line_needs_no_pool(tmp_path, capsys):
    from condpretrain.cli import main

    a = saved_selection(tmp_path / "a", "random", SCORES_A)
    b = saved_selection(tmp_path / "b", "clustering-min", SCORES_B)
    code = main(["select", "--method", "fuse:random,clustering-min", "--fuse-from", f"{a},{b}",
                 "--count", "2", "--out", str(tmp_path / "out")])
    assert code == 0 and "selected 2 of 6" in capsys.readouterr().out
    assert main(["select", "--method", "random", "--count", "2",
                 "--out", str(tmp_path / "none")]) == 2  # no pool, no fusion: refused
