"""``select`` keeps pool copies of the target's test/val images out of the subset, lists
them, and ``select --scores`` re-selection honours the list."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dupgen import make_leaky_data

from condpretrain.config import SelectConfig, build_config
from condpretrain.eval_duplicates import EVAL_DUPLICATES_CSV
from condpretrain.selection import rank_pool, reselect, select

PLANTED = 5  # exact, resized, JPEG, flipped copies of test images + a resized val image


@pytest.fixture(scope="module")
def leaky(tmp_path_factory) -> dict:
    return make_leaky_data(tmp_path_factory.mktemp("leaky"))


def config(**values) -> SelectConfig:
    return build_config(SelectConfig, "quick", method="random", device="cpu", **values)


def subset_paths(folder: Path) -> list[str]:
    with open(folder / "subset.csv", newline="") as handle:
        return [row["path"] for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def everything(leaky, tmp_path_factory) -> Path:
    """A selection that asks for the whole pool: only the planted copies stay out."""
    out = tmp_path_factory.mktemp("sel") / "all"
    select([str(leaky["pool"])], str(leaky["target"]), out, config(fraction=1.0))
    return out


def test_copies_of_evaluation_images_are_listed_and_never_selected(leaky, everything):
    planted = {str(p) for p in leaky["planted"].values()}
    chosen = subset_paths(everything)
    assert not planted & set(chosen)
    assert {str(p) for p in leaky["negatives"]} <= set(chosen)  # not copies: selectable
    meta = json.loads((everything / "selection.json").read_text())
    assert meta["pool_size"] == 20 + PLANTED + 2 and meta["selected"] == 22
    block = meta["eval_duplicates"]
    assert block["searched"] and block["found"] == PLANTED and block["excluded"]
    assert block["eval_images"] == 8 and block["in_subset"] == 0  # test (6) and val (2)
    listed = {d["path"]: d for d in block["list"]}
    assert set(listed) == planted
    for kind, path in leaky["planted"].items():
        assert listed[str(path)]["matched"] == str(leaky["sources"][kind])
        assert listed[str(path)]["flipped"] == (kind == "flipped")
    with open(everything / EVAL_DUPLICATES_CSV, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["path"] for r in rows} == planted
    # scores.npy keeps their scores: they are left out when ranking, not by a NaN
    pool = [r["path"] for r in csv.DictReader(open(everything / "pool.csv", newline=""))]
    scores = np.load(everything / "scores.npy")
    assert all(np.isfinite(scores[pool.index(p)]) for p in planted)


def test_keep_eval_duplicates_lets_them_be_selected(leaky, tmp_path):
    select([str(leaky["pool"])], str(leaky["target"]), tmp_path,
           config(fraction=1.0, keep_eval_duplicates=True))
    assert {str(p) for p in leaky["planted"].values()} <= set(subset_paths(tmp_path))
    block = json.loads((tmp_path / "selection.json").read_text())["eval_duplicates"]
    assert block["found"] == PLANTED and not block["excluded"] and block["in_subset"] == PLANTED


def test_reselection_honours_the_saved_list(leaky, everything, tmp_path):
    planted = {str(p) for p in leaky["planted"].values()}
    again = reselect(everything, tmp_path / "a", count=27)  # more than the 22 allowed
    assert again.selected == 22 and not planted & set(subset_paths(tmp_path / "a"))
    assert (tmp_path / "a" / EVAL_DUPLICATES_CSV).is_file()
    twice = reselect(tmp_path / "a", tmp_path / "b", count=27)  # a reselection's reselection
    assert twice.selected == 22
    kept = reselect(everything, tmp_path / "c", count=27, keep_eval_duplicates=True)
    assert kept.selected == 27 and planted <= set(subset_paths(tmp_path / "c"))
    block = json.loads((tmp_path / "c" / "selection.json").read_text())["eval_duplicates"]
    assert not block["excluded"] and block["in_subset"] == PLANTED


def test_cli_flag_and_scores_reselection(leaky, everything, tmp_path):
    command = [sys.executable, "-m", "condpretrain", "select", "--scores", str(everything),
               "--fraction", "1.0", "--keep-eval-duplicates", "--out", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert {str(p) for p in leaky["planted"].values()} <= set(subset_paths(tmp_path))


def test_a_target_without_evaluation_images_is_not_searched(stripes_target, two_part_pool,
                                                             tmp_path):
    select([str(two_part_pool)], str(stripes_target / "train"), tmp_path, config(count=5))
    meta = json.loads((tmp_path / "selection.json").read_text())
    assert meta["eval_duplicates"] == {"searched": False,
                                       "reason": "the target has no test/val split"}
    assert not (tmp_path / EVAL_DUPLICATES_CSV).exists()


def test_the_fixture_pool_holds_no_copies_of_the_fixture_target(two_part_pool, stripes_target,
                                                                tmp_path):
    # Synthetic stripes are alike, but not copies: nothing is excluded from other tests.
    select([str(two_part_pool)], str(stripes_target), tmp_path, config(count=5))
    block = json.loads((tmp_path / "selection.json").read_text())["eval_duplicates"]
    assert block["searched"] and block["found"] == 0 and block["eval_images"] == 16


def test_rank_pool_skips_excluded_indices():
    scores = np.array([0.9, 0.8, np.nan, 0.7, 0.1], dtype=np.float32)
    assert rank_pool(scores, 2, 0, exclude=np.array([0, 3])).tolist() == [1, 4]
    assert rank_pool(scores, 9, 0, exclude=np.array([], dtype=np.int64)).tolist() == [0, 1, 3, 4]


def test_report_lists_the_copies(leaky, everything, tmp_path):
    from condpretrain.experiment import write_results
    from condpretrain.report import report

    row = {"target": "leaky", "mode": "supervised", "resolution": "224", "budget": "0.5",
           "method": "random", "seed": "0", "top1": "50", "select_dir": str(everything),
           "pretrain_device_hours": "1", "select_device_hours": "0.1", "select_seconds": "1",
           "pretrain_seconds": "1", "finetune_seconds": "1"}
    write_results(tmp_path / "results.csv", [row])
    md = report(tmp_path).markdown.read_text()
    assert "## Evaluation images found in the pool" in md
    exact = leaky["planted"]["exact"]
    assert f"| leaky | z/{exact.name} | a/{leaky['sources']['exact'].name} | 0 | 1.000 | no |" in md
    assert md.count("| leaky |") >= PLANTED


def test_two_processes_find_the_same_copies(leaky, everything, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", "-m", "condpretrain", "select", "--source",
               str(leaky["pool"]), "--target", str(leaky["target"]), "--method", "random",
               "--fraction", "1.0", "--preset", "quick", "--device", "cpu", "--out",
               str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert ((tmp_path / EVAL_DUPLICATES_CSV).read_bytes()
            == (everything / EVAL_DUPLICATES_CSV).read_bytes())
    assert (tmp_path / "subset.csv").read_bytes() == (everything / "subset.csv").read_bytes()
