"""Several targets sharing one subset: the merge of rankings, and ``select --target A --target B``."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from imagegen import make_target

from condpretrain.cli import main
from condpretrain.errors import CondPretrainError
from condpretrain.multi_target import merge_rankings, parse_mix, quotas, target_names

QUICK = ["--preset", "quick", "--device", "cpu"]


def ranks(*orders: list[int]) -> list[np.ndarray]:
    return [np.array(order) for order in orders]


# ------------------------------------------------------------------------ the pure parts


def test_quotas_sum_to_the_budget_by_largest_remainder():
    assert quotas(19, [0.75, 0.25]) == [14, 5]
    assert quotas(10, [1 / 3] * 3) == [4, 3, 3]
    assert quotas(7, [0.5, 0.5]) == [4, 3]


def test_disjoint_rankings_follow_the_mix():
    merge = merge_rankings(ranks([0, 1, 2, 3, 4], [10, 11, 12, 13]), [3, 1], budget=4)
    assert merge.chosen == [0, 10, 1, 2]  # round-robin, each to its quota
    assert Counter(merge.taken_by) == {0: 3, 1: 1} and merge.depth == [3, 1]


def test_overlap_counts_for_both_and_the_freed_budget_is_refilled():
    same = [0, 1, 2, 3, 4, 5]
    merge = merge_rankings(ranks(same, same), [2, 2], budget=4)
    # quotas: target 1's two images are target 0's; the two freed go on round-robin,
    # target 1 stepping past image 2 (taken by target 0 in this turn) to 3
    assert merge.chosen == [0, 1, 2, 3]
    assert merge.taken_by == [0, 0, 0, 1] and merge.depth == [3, 4]


def test_spent_rankings_give_fewer_images():
    merge = merge_rankings(ranks([0, 1], [1, 2]), [2, 2], budget=4)
    assert merge.chosen == [0, 1, 2] and merge.depth == [2, 2]


@pytest.mark.parametrize(("text", "message"), [
    ("0.5", "give one share per target (2), got 1"),
    ("0.6,0.6", "must sum to 1, got 1.2"),
    ("1.5,-0.5", "must be in (0, 1]"),
    ("half,half", "expected numbers"),
])
def test_bad_mix_is_refused(text, message):
    with pytest.raises(CondPretrainError, match=r"^--mix: ") as error:
        parse_mix(text, 2)
    assert message in str(error.value)


def test_mix_defaults_to_equal_shares_and_tolerates_rounding():
    assert parse_mix(None, 4) == [0.25] * 4
    assert parse_mix("0.3333333,0.3333333,0.3333334", 3) == [0.3333333, 0.3333333, 0.3333334]


def test_target_names_must_differ_and_make_folders(tmp_path):
    assert list(target_names([f"cars={tmp_path}", f"birds={tmp_path}"])) == ["cars", "birds"]
    with pytest.raises(CondPretrainError, match="two targets are named 'cars'"):
        target_names([f"cars={tmp_path}", f"cars={tmp_path}"])


# ------------------------------------------------------------------------ the command


@pytest.fixture(scope="module")
def noise_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A target like the pool's noise part (fresh images: no copies of pool images)."""
    return make_target(tmp_path_factory.mktemp("data") / "noise_target",
                       {"cold": "noise", "speckle": "noise"}, train=16, test=8, seed=5)


@pytest.fixture(scope="module")
def mixed(two_part_pool, stripes_target, noise_target, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mixed")
    assert main(["select", "--source", str(two_part_pool),
                 "--target", f"stripes={stripes_target}", "--target", f"noise={noise_target}",
                 "--mix", "0.75,0.25", "--method", "domain-classifier", "--fraction", "0.2",
                 "--out", str(out), *QUICK]) == 0
    return out


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_one_subset_serves_both_targets_by_the_mix(mixed):
    rows = read_rows(mixed / "subset.csv")
    assert len(rows) == 19  # round(0.2 x 96)
    assert list(rows[0]) == ["path", "label", "pool", "score", "rank", "targets", "taken_by"]
    assert len({r["path"] for r in rows}) == 19
    assert Counter(r["taken_by"] for r in rows) == {"stripes": 14, "noise": 5}  # about 3:1
    # each target drew on the part of the pool that resembles it
    assert all(r["label"].startswith("stripes") for r in rows if r["taken_by"] == "stripes")
    assert all(r["label"].startswith("noise") for r in rows if r["taken_by"] == "noise")
    assert all(r["taken_by"] in r["targets"].split(";") for r in rows)


def test_each_target_keeps_its_own_selection(mixed):
    for name in ("stripes", "noise"):
        own = json.loads((mixed / "targets" / name / "selection.json").read_text())
        assert own["selected"] == 19 and (mixed / "targets" / name / "scores.npy").is_file()
    pool = (mixed / "targets" / "stripes" / "pool.csv").read_text()
    assert (mixed / "pool.csv").read_text() == pool


def test_selection_json_reports_shares_and_overlap(mixed):
    meta = json.loads((mixed / "selection.json").read_text())
    assert meta["selected"] == meta["budget"] == 19 and meta["pool_size"] == 96
    stripes, noise = meta["per_target"]["stripes"], meta["per_target"]["noise"]
    assert (stripes["share_asked"], noise["share_asked"]) == (0.75, 0.25)
    assert (stripes["quota"], noise["quota"]) == (14, 5)
    assert stripes["taken"] + noise["taken"] == 19
    assert stripes["subset_share"] == pytest.approx(stripes["in_take"] / 19, abs=1e-6)
    [pair] = meta["overlap"]
    assert pair["targets"] == ["stripes", "noise"]
    assert pair["shared"] == 0 and pair["jaccard"] == 0.0  # the two parts do not overlap


@pytest.mark.parametrize(("mix", "targets", "message"), [
    ("0.5,0.3,0.2", 2, "--mix: give one share per target (2), got 3"),
    ("0.5,0.4", 2, "--mix: the shares must sum to 1, got 0.9"),
    ("1", 1, "--mix: shares the budget among several targets"),
])
def test_bad_mix_exits_2_in_one_line(mix, targets, message, two_part_pool, stripes_target,
                                     noise_target, tmp_path, capsys):
    given = [f"stripes={stripes_target}", f"noise={noise_target}"][:targets]
    args = ["select", "--source", str(two_part_pool), "--mix", mix, "--method", "random",
            "--fraction", "0.2", "--out", str(tmp_path / "o"), *QUICK]
    for spec in given:
        args += ["--target", spec]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("condpretrain select: error: ")
    assert message in err
    assert not (tmp_path / "o" / "targets").exists()


def test_one_target_selects_as_before(two_part_pool, stripes_target, tmp_path):
    assert main(["select", "--source", str(two_part_pool), "--target", str(stripes_target),
                 "--method", "random", "--count", "5", "--out", str(tmp_path), *QUICK]) == 0
    rows = read_rows(tmp_path / "subset.csv")
    assert len(rows) == 5 and list(rows[0]) == ["path", "label", "pool", "score", "rank"]
    assert not (tmp_path / "targets").exists()


def test_a_target_name_must_make_a_folder(tmp_path):
    with pytest.raises(CondPretrainError, match="cannot be a folder name"):
        target_names([f"../up={tmp_path}", f"b={tmp_path}"])
