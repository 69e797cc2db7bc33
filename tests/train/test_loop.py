"""The one loop on a toy regression: iteration schedules, per-iteration LR, resume."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from condpretrain.errors import CondPretrainError
from condpretrain.train.data import EpochSampler, make_loader
from condpretrain.train.loop import Recorder, Schedule, Trainer, restore
from condpretrain.train.metrics import StepOutput
from condpretrain.train.run import CostMeter, RunDir

DATA = TensorDataset(torch.linspace(-1, 1, 10)[:, None], torch.linspace(-1, 1, 10)[:, None] * 3)


@dataclass
class Regression:
    model: nn.Module

    def training_step(self, batch, device: torch.device) -> StepOutput:
        x, y = batch
        loss = nn.functional.mse_loss(self.model(x), y)
        return StepOutput(loss, len(x), parts={"double": loss * 2})


def _trainer(iterations: int) -> Trainer:
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    poly = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1 - i / iterations)
    return Trainer(Regression(model), optimizer, poly, torch.device("cpu"), amp=False)


def _loader(epoch: int, skip: int):
    return make_loader(DATA, batch_size=4, workers=0, epoch=epoch, seed=1, rank=0, world=1,
                       shuffle=True, skip_batches=skip, drop_last=True, pin=False, fill=True)


def _train(out: Path, iterations: int, resume: bool = False) -> Trainer:
    run = RunDir(out)
    run.prepare(resume)
    trainer = _trainer(iterations)
    resumed = restore(run, trainer, resume)
    cost = CostMeter.start(resumed.cost, flops_per_image=1)
    trainer.run(_loader, Schedule.by_iterations(iterations, 3, 2.5), position=resumed.position,
                recorder=Recorder(run, cost, checkpoint_seconds=0))
    return trainer


def _lines(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_iteration_schedule_lines_and_lr(tmp_path):
    trainer = _train(tmp_path / "run", 7)  # 2 batches per epoch: crosses 3 epochs
    lines = _lines(tmp_path / "run")
    assert [x["iteration"] for x in lines] == [3, 6, 7]
    assert [x["epoch"] for x in lines] == [1.2, 2.4, 2.8]
    assert lines[0]["lr"] == pytest.approx(0.1 * (1 - 2 / 7))  # the lr of the line's last step
    assert lines[0]["double"] == pytest.approx(2 * lines[0]["loss"])
    assert {"seconds", "iterations_per_s"} <= set(lines[0])
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["position"]["iteration"] == 7 and state["position"]["epoch"] == 3
    assert state["position"]["step"] == 1
    assert json.loads((tmp_path / "run" / "run.json").read_text())["iteration"] == 7
    assert trainer.lr == pytest.approx(0.0)


def test_a_resumed_run_may_be_longer_and_its_lr_follows_the_new_length(tmp_path):
    first = _train(tmp_path / "run", 5)
    assert first.lr == pytest.approx(0.0)  # the poly schedule ended at 5
    longer = _trainer(8)
    resumed = restore(RunDir(tmp_path / "run"), longer, resume=True)
    assert resumed.position.iteration == 5
    assert longer.lr == pytest.approx(0.1 * (1 - 5 / 8))  # recomputed for 8, not 0
    _train(tmp_path / "run", 8, resume=True)
    assert [x["iteration"] for x in _lines(tmp_path / "run")] == [3, 5, 6, 8]


def test_kill_and_resume_is_bit_exact(tmp_path, monkeypatch):
    whole = _train(tmp_path / "whole", 8)
    original = Trainer.train_step
    calls = {"n": 0}

    def dying(self, batch):
        calls["n"] += 1
        if calls["n"] > 4:
            raise RuntimeError("injected kill")
        return original(self, batch)

    monkeypatch.setattr(Trainer, "train_step", dying)
    with pytest.raises(RuntimeError):
        _train(tmp_path / "killed", 8)
    monkeypatch.undo()
    resumed = _train(tmp_path / "killed", 8, resume=True)
    for a, b in zip(whole.task.model.parameters(), resumed.task.model.parameters(), strict=True):
        assert torch.equal(a, b)
    one, two = _lines(tmp_path / "whole"), _lines(tmp_path / "killed")
    assert [x["iteration"] for x in two] == [3, 6, 8]
    assert [x["loss"] for x in one] == pytest.approx([x["loss"] for x in two])
    assert json.loads((tmp_path / "killed" / "run.json").read_text())["sessions"] == 2


def test_a_diverging_loss_is_a_one_line_error(tmp_path):
    trainer = _trainer(4)
    trainer.optimizer.param_groups[0]["lr"] = math.inf
    with pytest.raises(CondPretrainError, match="try a lower --lr") as err:
        trainer.run(_loader, Schedule.by_iterations(4, 2, 2.5))
    assert "\n" not in str(err.value)


def test_epoch_sampler_fills_and_shards():
    tiny = EpochSampler(3, seed=0, rank=0, world=2, min_share=4)
    other = EpochSampler(3, seed=0, rank=1, world=2, min_share=4)
    assert len(tiny) == len(list(tiny)) == 4 == len(list(other))
    assert sorted(set(tiny.indices()) | set(other.indices())) == [0, 1, 2]
    base = EpochSampler(10, seed=5, epoch=2)
    assert EpochSampler(base, seed=0, start=3).indices() == base.indices()[3:]
    assert len(EpochSampler(0, seed=0)) == 0 and list(EpochSampler(0, seed=0)) == []


@pytest.mark.parametrize(("interval", "saves"), [(None, 3), (3600.0, 1), (0.0, 9)])
def test_epoch_ends_save_only_when_the_interval_is_due(tmp_path, monkeypatch, interval, saves):
    """An epoch schedule without an interval saves at every epoch end; with one, only when
    it is due (an hour: never here) and at the end of the run; 0 saves after every step
    (2 steps in each of 3 epochs) and at every epoch end."""
    saved = []
    monkeypatch.setattr(RunDir, "save_checkpoint", lambda self, state: saved.append(state))
    run = RunDir(tmp_path / "run")
    run.prepare(False)
    trainer = _trainer(6)
    trainer.run(_loader, Schedule.by_epochs(3), recorder=Recorder(
        run, CostMeter.start(None, flops_per_image=1), checkpoint_seconds=interval))
    assert len(saved) == saves
    assert saved[-1]["position"]["epoch"] == 3
