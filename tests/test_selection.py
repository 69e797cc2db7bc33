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


# -- a run's outputs are one set (selection.json last, the marker every reader checks) ---


def _random(seed: int, count: int = 10) -> SelectConfig:
    return build_config(SelectConfig, "quick", method="random", count=count, seed=seed,
                        device="cpu")


def _snapshot(folder) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes()
            for name in ("pool.csv", "scores.npy", "subset.csv", "selection.json")}


def test_a_failed_rerun_leaves_the_previous_selection_whole(two_part_pool, stripes_target,
                                                            tmp_path, monkeypatch):
    out = tmp_path / "sel"
    select([str(two_part_pool)], str(stripes_target), out, _random(seed=0))
    before = _snapshot(out)

    def fails(*args, **kwargs):  # after pool.csv and scores.npy, before subset.csv
        raise RuntimeError("simulated failure")

    monkeypatch.setattr("condpretrain.selection._write_subset", fails)
    with pytest.raises(RuntimeError, match="simulated"):
        select([str(two_part_pool)], str(stripes_target), out, _random(seed=1))
    monkeypatch.undo()
    assert _snapshot(out) == before  # not the new scores beside the old subset
    assert not list(out.glob(".*.staged")) and not list(out.glob(".*.tmp"))
    # re-selecting reads one run's files: the subset is the best of those scores
    again = reselect(out, tmp_path / "again", count=4)
    scores = np.load(out / "scores.npy")
    chosen = (tmp_path / "again" / "subset.csv").read_text().splitlines()[1:]
    assert [float(line.rsplit(",", 2)[1]) for line in chosen] == \
        sorted(scores.tolist(), reverse=True)[:4]
    assert again.selected == 4 and json.loads((tmp_path / "again" / "selection.json")
                                              .read_text())["seed"] == 0


def test_a_run_killed_mid_commit_is_refused_by_select_scores(two_part_pool, stripes_target,
                                                            tmp_path, monkeypatch, capsys):
    import os

    from condpretrain.cli import main
    from condpretrain.experiment.grid import selection_done

    out = tmp_path / "sel"
    select([str(two_part_pool)], str(stripes_target), out, _random(seed=0))
    real_replace = os.replace

    def killed_at_subset(source, destination):
        if str(destination) == str(out / "subset.csv"):
            raise OSError(5, "killed")
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", killed_at_subset)
    with pytest.raises(CondPretrainError):
        select([str(two_part_pool)], str(stripes_target), out, _random(seed=1))
    monkeypatch.undo()
    # new pool.csv and scores.npy beside the old subset.csv: no marker, so no reader uses it
    assert not (out / "selection.json").exists() and not selection_done(out)
    assert main(["select", "--scores", str(out), "--out", str(tmp_path / "b"),
                 "--count", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "did not finish" in err
    select([str(two_part_pool)], str(stripes_target), out, _random(seed=1))  # a rerun heals it
    assert reselect(out, tmp_path / "b", count=3).selected == 3


def test_a_run_without_the_duplicate_search_drops_an_earlier_list(two_part_pool, tmp_path):
    out = tmp_path / "sel"
    select([str(two_part_pool)], None, out, _random(seed=0))
    (out / "eval_duplicates.csv").write_text("path,pool_index\nstale,0\n")  # another run's
    select([str(two_part_pool)], None, out, _random(seed=1))
    assert not (out / "eval_duplicates.csv").exists()
    assert reselect(out, tmp_path / "b", count=3).selected == 3


@pytest.mark.parametrize("content", [b"\x93NUMPY garbage", b"", b"not numpy at all" * 50])
def test_a_corrupt_scores_file_is_one_line(two_part_pool, stripes_target, tmp_path, content):
    select([str(two_part_pool)], str(stripes_target), tmp_path / "a", _random(seed=0))
    (tmp_path / "a" / "scores.npy").write_bytes(content)
    with pytest.raises(CondPretrainError, match="scores.npy is not a readable scores file"):
        reselect(tmp_path / "a", tmp_path / "b", count=3)


def test_scores_of_another_kind_are_refused(two_part_pool, stripes_target, tmp_path):
    select([str(two_part_pool)], str(stripes_target), tmp_path / "a", _random(seed=0))
    np.save(tmp_path / "a" / "scores.npy", np.array(["a"] * 96))
    with pytest.raises(CondPretrainError, match="not one float score per pool image"):
        reselect(tmp_path / "a", tmp_path / "b", count=3)


def test_subset_paths_work_from_another_working_directory(two_part_pool, stripes_target,
                                                          tmp_path, monkeypatch):
    from condpretrain.train.pretrain import training_index

    monkeypatch.chdir(two_part_pool.parent)
    select([two_part_pool.name], str(stripes_target), tmp_path / "sel", _random(seed=0))
    assert all(line.startswith("/") for line in
               (tmp_path / "sel" / "subset.csv").read_text().splitlines()[1:])
    monkeypatch.chdir(tmp_path)  # pretrain runs elsewhere, the pool given another way
    index = training_index([str(two_part_pool)], tmp_path / "sel" / "subset.csv")
    assert len(index) == 10
