"""Calibration: step times from the one training loop, rates from them, and a short real
pre-training run measured end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from vocgen import make_voc

from condpretrain.config import DetectConfig, PlanConfig, SegmentConfig, build_config
from condpretrain.data.sources import open_pool, open_target
from condpretrain.errors import CondPretrainError
from condpretrain.experiment.grid import Cell
from condpretrain.experiment.runner import Experiment
from condpretrain.plan.calibrate import MIN_EPOCHS, calibrate_pretrain, calibration_schedule
from condpretrain.plan.calibrate_select import (
    MODEL_EPOCHS,
    _epochs_option,
    calibrate_selection,
    model_kind,
)
from condpretrain.plan.calibrate_task import calibrate_task, shortened, task_rate
from condpretrain.plan.clock import CallTimer, StepClock, epoch_rate, run_rate
from condpretrain.plan.make import experiment_config
from condpretrain.plan.rates import TaskWork
from condpretrain.train.loop import Trainer
from condpretrain.train.metrics import StepOutput


def synthetic_starts(epochs: int, per_epoch: int, step: float, turn: float, last: float,
                     warm: float) -> list[float]:
    """Step start times: ``step`` apart within an epoch, the epoch's last step ``last`` of
    one, ``turn`` more between epochs, the first gap ``warm`` longer."""
    starts, now = [], 0.0
    for _ in range(epochs):
        for s in range(per_epoch):
            starts.append(now)
            now += (step * last if s == per_epoch - 1 else step) + (warm if not starts[1:] else 0)
        now += turn
    return starts


def test_run_rate_separates_steps_turns_and_once():
    starts = synthetic_starts(epochs=3, per_epoch=4, step=0.1, turn=0.5, last=0.5, warm=1.0)
    run = 10.0
    rate = run_rate(starts, epochs=3, warmup=1, run_seconds=run, batch_size=32, last_batch=0.5)
    assert rate.step_seconds == pytest.approx(0.1)
    assert rate.epoch_seconds == pytest.approx(0.5)
    # the rest, the warm-up's extra second among it, is paid once
    assert rate.fixed_seconds == pytest.approx(run - 3 * 3.5 * 0.1 - 2 * 0.5)
    assert rate.seconds(3, 112) == pytest.approx(run)  # 3.5 batches of 32 per epoch


def test_evaluation_passes_are_apart_from_the_turn():
    evaluations = [0.9, 0.3, 0.3, 0.3]  # one per epoch, the first slower (warm-up)
    starts = synthetic_starts(epochs=4, per_epoch=3, step=0.1, turn=0.5 + 0.3, last=1.0,
                              warm=0.0)
    rate = run_rate(starts, epochs=4, warmup=0, run_seconds=8.0, batch_size=16,
                    evaluations=evaluations)
    assert rate.evaluation_seconds == pytest.approx(0.3)
    assert rate.epoch_seconds == pytest.approx(0.5)
    assert rate.seconds(4, 48) == pytest.approx(8.0)
    # evaluated after 2 of the 4 epochs (the last among them): 2 passes fewer
    assert rate.seconds(4, 48, evaluations=2) == pytest.approx(8.0 - 2 * 0.3)


def test_one_step_epochs_fold_the_turn_into_the_step():
    starts = synthetic_starts(epochs=5, per_epoch=1, step=0.2, turn=0.3, last=1.0, warm=0.0)
    rate = run_rate(starts, epochs=5, warmup=0, run_seconds=3.0, batch_size=8)
    assert rate.step_seconds == pytest.approx(0.5) and rate.epoch_seconds == 0
    assert rate.seconds(5, 8) == pytest.approx(3.0)


def test_epoch_rate_leaves_out_warm_epochs():
    starts = synthetic_starts(epochs=6, per_epoch=2, step=0.1, turn=0.2, last=1.0, warm=2.0)
    epoch, once = epoch_rate(starts, epochs=6, warmup=1, run_seconds=5.0)
    assert epoch == pytest.approx(0.4)
    assert once == pytest.approx(5.0 - 6 * 0.4)
    with pytest.raises(ValueError):
        epoch_rate(starts[:1], epochs=1, warmup=0, run_seconds=1.0)


class Doubling:
    def __init__(self) -> None:
        self.model = nn.Linear(2, 1)

    def training_step(self, batch, device) -> StepOutput:
        return StepOutput(self.model(batch).pow(2).mean(), len(batch))


def trainer() -> Trainer:
    task = Doubling()
    return Trainer(task, torch.optim.SGD(task.model.parameters(), lr=0.1), None,
                   torch.device("cpu"), amp=False)


def test_step_clock_times_every_step_of_each_run_and_lets_go():
    original = Trainer.train_step
    batches = [torch.ones(2, 2)] * 3
    with StepClock() as clock:
        trainer().fit(lambda epoch: batches, epochs=2)
        trainer().fit(lambda epoch: batches[:1], epochs=1)
    assert Trainer.train_step is original
    first, second = clock.starts()
    assert len(first) == 6 and len(second) == 1
    assert first == sorted(first)
    with pytest.raises(RuntimeError), StepClock():
        raise RuntimeError("a failed calibration")
    assert Trainer.train_step is original


def test_call_timer_times_each_call_and_lets_go():
    class Owner:
        @staticmethod
        def work(x: int) -> int:
            return 2 * x

    original = Owner.work
    with CallTimer(Owner, "work") as timer:
        assert Owner.work(3) == 6 and Owner.work(4) == 8
    assert len(timer.seconds) == 2 and all(s >= 0 for s in timer.seconds)
    assert Owner.work is original


def test_schedule_takes_a_sample_or_more_epochs():
    config = build_config(PlanConfig, "paper", steps=200, warmup_steps=20)
    big = calibration_schedule(1_281_167, 256, False, config, run_epochs=90)
    assert big.epochs == MIN_EPOCHS and big.steps == 55 and big.images == 55 * 256
    assert big.last_batch == 1.0
    small = calibration_schedule(100, 32, False, config, run_epochs=90)  # 3 x 32 + 4
    assert small.images == 100 and small.steps == 4 and small.epochs == 55
    assert small.last_batch == pytest.approx(4 / 32)
    moco = calibration_schedule(100, 32, True, config, run_epochs=200)  # the 4 are dropped
    assert moco.steps == 3 and moco.last_batch == 1.0 and moco.epochs == 74
    # never longer than the run itself, but four epochs at least
    assert calibration_schedule(100, 32, False, config, run_epochs=30).epochs == 30
    assert calibration_schedule(100, 32, False, config, run_epochs=2).epochs == MIN_EPOCHS


def test_cached_models_are_known_by_kind():
    assert model_kind("target-model-resnet18-9dceda797943a2f6") == "target-model-resnet18"
    assert model_kind("domain-classifier-resnet10-0123456789abcdef") == \
        "domain-classifier-resnet10"
    assert _epochs_option("target-model-resnet18") == MODEL_EPOCHS["target-model"]
    assert _epochs_option("domain-classifier-resnet10") == "dc_epochs"
    assert _epochs_option("moco-target") == "moco_epochs"  # its key: moco-target-<hash>
    assert _epochs_option("my-own-model") is None


def test_a_short_real_pretraining_is_measured(two_part_pool: Path, stripes_target: Path,
                                               tmp_path: Path):
    config = build_config(PlanConfig, "quick", steps=3, warmup_steps=1, device="cpu",
                          resolutions=[16], methods=["random"])
    exp = Experiment(experiment_config([str(two_part_pool)], str(stripes_target), config,
                                       "quick"), tmp_path / "out")
    pool = open_pool(exp.config.pool)
    cell = Cell("target", "supervised", 16, 0.06, "random", 0)
    rate, cache, run = calibrate_pretrain(exp, cell, pool, config, tmp_path / "work")
    assert run["epochs"] >= MIN_EPOCHS and run["steps_per_epoch"] >= 1
    assert rate.batch_size == 32 and rate.step_seconds > 0 and rate.fixed_seconds >= 0
    assert cache.per_item_seconds > 0
    # the run trained the epochs it was given and found its image cache already built
    run_dir = tmp_path / "work" / "pretrain-supervised-16" / "run"
    cost = json.loads((run_dir / "run.json").read_text())
    assert cost["cache_seconds"] == 0 and cost["images"] == run["epochs"] * run["images"]


def test_task_rate_separates_iterations_the_bn_pass_the_test_pass_and_once():
    starts = [0.0, 2.0, 2.5, 3.0, 3.5, 4.0]  # the first gap: warm-up
    ran = TaskWork(iterations=6, precise_bn_batches=4, train_images=12, test_images=10)
    rate = task_rate([starts], warmup=1, wall_seconds=10.0, ran=ran, precise_seconds=0.8,
                     evaluation_seconds=2.0, load_seconds=0.3)
    assert rate.step_seconds == pytest.approx(0.5)
    assert rate.precise_bn_seconds == pytest.approx(0.2)
    assert rate.evaluation_seconds == pytest.approx(0.2)
    # the rest of the run, and reading the real run's split lists, are paid once
    assert rate.fixed_seconds == pytest.approx(10.0 - 6 * 0.5 - 0.8 - 2.0 + 0.3)
    assert rate.seconds(ran) == pytest.approx(10.0 + 0.3)
    with pytest.raises(CondPretrainError, match="a rate needs two"):
        task_rate([starts[:1]], 0, 1.0, ran, 0.0, 0.0, 0.0)
    with pytest.raises(CondPretrainError, match="expected one training run"):
        task_rate([starts, starts], 0, 1.0, ran, 0.0, 0.0, 0.0)


def test_a_task_is_shortened_by_its_own_length_option():
    detect = build_config(DetectConfig, "paper")
    assert shortened(detect, ("epochs", "iterations"), 220, 50).iterations == 220
    segment = build_config(SegmentConfig, "paper")
    assert shortened(segment, ("epochs", "iterations"), 220, 50).epochs == 5  # 250 its
    with pytest.raises(CondPretrainError, match="no option sets the length"):
        shortened(segment, ("iterations",), 220, 50)


@pytest.mark.parametrize("task", ["detect", "segment"])
def test_a_short_real_downstream_run_is_measured(task, two_part_pool: Path, tmp_path: Path):
    voc = make_voc(tmp_path / "VOC2007", train=12, test=6, size=48)
    config = build_config(PlanConfig, "quick", steps=4, warmup_steps=1, device="cpu",
                          test_images=3, resolutions=[16], methods=["random"], task=task,
                          **{task: {"iterations": 40} if task == "detect" else {"epochs": 20}})
    exp = Experiment(experiment_config([str(two_part_pool)], f"voc={voc}", config, "quick"),
                     tmp_path / "out")
    cell = Cell("voc", "supervised", 16, 0.06, "random", 0, task=task)
    rate, work, ran = calibrate_task(exp, cell, config, tmp_path / "work")
    # the real run's work: its options on the full splits
    assert (work.train_images, work.test_images) == (12, 6)
    assert work.iterations == (40 if task == "detect" else 20 * 12 // 4)
    assert work.precise_bn_batches == (2 if task == "detect" else 0)
    # the calibration's: warm-up + steps iterations (or the epochs covering them), a
    # sample of the test split
    assert ran["test_images"] == 3
    assert ran["iterations"] == (5 if task == "detect" else 6)
    assert rate.step_seconds > 0 and rate.evaluation_seconds > 0 and rate.fixed_seconds > 0
    assert (rate.precise_bn_seconds > 0) == (task == "detect")
    result = json.loads((tmp_path / "work" / f"{task}-supervised" / "run" /
                         "result.json").read_text())
    assert result["test_images"] == 3


def test_an_embedding_scorer_is_calibrated_with_its_pools_embeddings(
        two_part_pool: Path, stripes_target: Path, tmp_path: Path):
    config = build_config(PlanConfig, "quick", device="cpu", score_batches=2,
                          methods='[knn@classic, "fuse:random,knn@classic"]')
    exp = Experiment(experiment_config([str(two_part_pool)], str(stripes_target), config,
                                       "quick"), tmp_path / "out")
    pool, target = open_pool(exp.config.pool), open_target(str(stripes_target))
    rates, measured = calibrate_selection(exp, "target", pool, target, 0.0, config,
                                          tmp_path / "work")
    # each scored method once, a fusion's parts in its place
    assert set(rates.methods) == set(measured["methods"]) == {"knn@classic", "random"}
    assert rates.methods["knn@classic"].models == ("embeddings-classic",)
    # the pool's embeddings: a cost per pool image, measured at two pool sizes
    assert rates.embeddings["embeddings-classic"].per_item_seconds > 0
    assert rates.methods["random"].models == ()


def test_a_moco_on_the_target_is_priced_by_its_own_epochs(two_part_pool: Path,
                                                          stripes_target: Path, tmp_path: Path):
    config = build_config(PlanConfig, "quick", device="cpu", score_batches=2,
                          methods="clustering-avg@moco:target")
    exp = Experiment(experiment_config([str(two_part_pool)], str(stripes_target), config,
                                       "quick"), tmp_path / "out")
    pool, target = open_pool(exp.config.pool), open_target(str(stripes_target))
    rates, _ = calibrate_selection(exp, "target", pool, target, 0.0, config, tmp_path / "w")
    (method,) = rates.methods.values()
    moco = [kind for kind in method.models if kind.startswith("moco-target")]
    assert len(moco) == 1 and "embeddings-moco:target" in method.models
    model = rates.models[moco[0]]
    # priced by --moco-epochs, whatever the calibration trained
    assert model.epochs_option == "moco_epochs" and model.epoch_seconds > 0
    select = exp.select_config("target", "clustering-avg@moco:target", 0)
    assert model.seconds(select) == pytest.approx(
        model.fixed_seconds + select.moco_epochs * model.epoch_seconds)
