"""Resume never runs code from a planted file, and never continues (or returns) a run with
other options or other training images than it was made with."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import kill_after, tiny_finetune, tiny_pretrain

from condpretrain.cli import main
from condpretrain.data.sources import open_pool, write_index_csv
from condpretrain.errors import CondPretrainError
from condpretrain.train.finetune import finetune
from condpretrain.train.pretrain import pretrain
from condpretrain.train.run import RunDir


class _Payload:
    """Unpickling it (without weights_only) calls ``open(marker, "w")``: creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(folder: Path, marker: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {}, "position": {}, "payload": _Payload(marker)},
               folder / "checkpoint.pt")


# -- item 1: no code from a planted checkpoint ------------------------------------------------


def test_a_planted_checkpoint_is_refused_in_one_line_and_never_run(pool4, tmp_path,
                                                                   monkeypatch):
    out, marker = tmp_path / "run", tmp_path / "marker"
    kill_after(monkeypatch, 1)  # a real, unfinished run: config.yaml, run.json, checkpoint
    with pytest.raises(RuntimeError, match="injected kill"):
        pretrain(str(pool4), out, tiny_pretrain(checkpoint_minutes=0))
    monkeypatch.undo()
    _plant(out, marker)
    with pytest.raises(CondPretrainError, match="checkpoint.pt is not a checkpoint that loads "
                                                "safely") as err:
        pretrain(str(pool4), out, tiny_pretrain(checkpoint_minutes=0), resume=True)
    assert "\n" not in str(err.value) and str(out / "checkpoint.pt") in str(err.value)
    assert not marker.exists()


def test_condpretrain_run_refuses_a_planted_checkpoint_in_a_cell(two_part_pool, stripes_target,
                                                                 tmp_path, capsys):
    experiment = tmp_path / "exp.yaml"
    experiment.write_text(yaml.safe_dump({
        "preset": "quick", "pool": [str(two_part_pool)], "targets": {"warm": str(stripes_target)},
        "methods": ["random"], "modes": ["supervised"], "budgets": [0.25],
        "resolutions": [16], "baselines": False, "seeds": [0],
        "select": {"device": "cpu"},
        "pretrain": {"epochs": 1, "batch_size": 16, "workers": 0, "device": "cpu"},
        "finetune": {"epochs": 1, "batch_size": 16, "resolution": 16, "workers": 0,
                     "device": "cpu"},
    }))
    out, marker = tmp_path / "out", tmp_path / "marker"
    cell = out / "pretrain" / "supervised-16" / "warm" / "random-b25" / "seed0"
    _plant(cell, marker)  # a checkpoint.pt makes the runner resume the cell by itself
    assert main(["run", str(experiment), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress log lines
    assert "loads safely" in err and str(cell) in err
    assert not marker.exists()


def test_checkpoints_hold_only_what_a_weights_only_load_reads(pool4, tmp_path, monkeypatch):
    kill_after(monkeypatch, 1)
    with pytest.raises(RuntimeError):
        pretrain(str(pool4), tmp_path / "run", tiny_pretrain(mode="moco", batch_size=16,
                                                             checkpoint_minutes=0))
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert {"python", "numpy", "torch"} <= set(state["rng"])


def test_rng_states_come_back_through_the_checkpoint(tmp_path):
    run = RunDir(tmp_path / "run")
    run.prepare(resume=False)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1), np.random.normal()  # cached Gaussians are part of the states
    run.save_checkpoint({"model": {}})
    expected = random.random(), np.random.random(), torch.rand(1).item()
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    run.load_checkpoint()
    assert (random.random(), np.random.random(), torch.rand(1).item()) == expected


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", os.urandom(512),
                                     "list", "no-rng"])
def test_a_file_that_is_not_a_checkpoint_is_one_line(tmp_path, content):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    if content == "list":
        torch.save([1, 2, 3], run.file("checkpoint.pt"))
    elif content == "no-rng":
        torch.save({"rng": {"python": 1}}, run.file("checkpoint.pt"))
    else:
        run.file("checkpoint.pt").write_bytes(content)
    with pytest.raises(CondPretrainError, match="checkpoint") as err:
        run.load_checkpoint()
    assert "\n" not in str(err.value) and str(run.file("checkpoint.pt")) in str(err.value)


def test_a_checkpoint_of_another_model_is_one_line(pool4, tmp_path, monkeypatch):
    kill_after(monkeypatch, 1)
    with pytest.raises(RuntimeError):
        pretrain(str(pool4), tmp_path / "run", tiny_pretrain(checkpoint_minutes=0))
    monkeypatch.undo()
    config = tmp_path / "run" / "config.yaml"
    config.unlink()  # nothing to compare the options with: the weights themselves disagree
    with pytest.raises(CondPretrainError, match="does not fit this run") as err:
        pretrain(str(pool4), tmp_path / "run", tiny_pretrain(arch="resnet18",
                                                             checkpoint_minutes=0), resume=True)
    assert "\n" not in str(err.value)


# -- item 12: resume with other options or other images ---------------------------------------


def test_resuming_a_finished_run_with_other_options_is_refused(pool4, tmp_path):
    pretrain(str(pool4), tmp_path / "run", tiny_pretrain(epochs=1))
    with pytest.raises(CondPretrainError, match="epochs was 1") as err:
        pretrain(str(pool4), tmp_path / "run", tiny_pretrain(epochs=6), resume=True)
    assert "\n" not in str(err.value)
    # neutral options (where and how fast it runs) may differ
    again = pretrain(str(pool4), tmp_path / "run", tiny_pretrain(epochs=1, workers=1),
                     resume=True)
    assert again.result["epochs"] == 1


def test_resuming_a_finished_fine_tune_with_other_options_is_refused(target6, tmp_path):
    finetune(str(target6), tmp_path / "ft", tiny_finetune(epochs=1))
    with pytest.raises(CondPretrainError, match="epochs was 1") as err:
        finetune(str(target6), tmp_path / "ft", tiny_finetune(epochs=3), resume=True)
    assert "\n" not in str(err.value)
    assert finetune(str(target6), tmp_path / "ft", tiny_finetune(epochs=1),
                    resume=True).result["epochs"] == 1


def _write_subset(pool4: Path, path: Path, classes: set[str]) -> None:
    pool = open_pool(str(pool4))
    write_index_csv(path, pool.take([i for i, label in enumerate(pool.labels)
                                     if label in classes]))


@pytest.mark.parametrize("finished", [False, True])
def test_a_subset_changed_at_the_same_path_is_refused_on_resume(pool4, tmp_path, monkeypatch,
                                                                finished):
    subset = tmp_path / "subset.csv"
    _write_subset(pool4, subset, {"a", "b"})
    config = tiny_pretrain(epochs=1, checkpoint_minutes=0)
    if not finished:
        kill_after(monkeypatch, 1)
        with pytest.raises(RuntimeError):
            pretrain(str(pool4), tmp_path / "run", config, subset=subset)
        monkeypatch.undo()
    else:
        pretrain(str(pool4), tmp_path / "run", config, subset=subset)
    _write_subset(pool4, subset, {"a", "b", "c"})
    with pytest.raises(CondPretrainError, match="training images differ") as err:
        pretrain(str(pool4), tmp_path / "run", config, subset=subset, resume=True)
    assert "\n" not in str(err.value) and "another --out" in str(err.value)
    _write_subset(pool4, subset, {"a", "b"})  # the same content again: resumes
    result = pretrain(str(pool4), tmp_path / "run", config, subset=subset, resume=True)
    assert result.result["images"] == 24
    with open(subset) as handle:
        assert len(list(csv.DictReader(handle))) == 24
