"""Calibration of a downstream target's training (``detect``, ``segment``): a short real
run of the task, per mode, as the experiment runner would make it of the cell.

The run has the cell's options (model, batch, image sizes, workers, precision,
BatchNorm re-estimation) and its real splits, shortened to ``warmup + steps``
iterations: a task's length is one of its ``extendable`` options (``iterations``, or
``epochs`` of a train split sampled so that an epoch is no longer than that), and its
test pass covers a sample of ``--test-images`` test images. Its optimizer steps are
timed by the one training loop (:class:`~condpretrain.plan.clock.StepClock`), the
BatchNorm re-estimation and the test pass by :class:`~condpretrain.plan.clock.CallTimer`,
and the rest of its wall time (building the model, the first loader, the final saves)
is paid once, with the time the real run takes to read its full split lists.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from condpretrain.config import PlanConfig
from condpretrain.errors import CondPretrainError
from condpretrain.experiment.grid import Cell
from condpretrain.experiment.runner import Experiment
from condpretrain.log import get_logger
from condpretrain.plan.calibrate import sample
from condpretrain.plan.clock import CallTimer, StepClock
from condpretrain.plan.rates import TaskRate, TaskWork
from condpretrain.registry import DOWNSTREAM_TASKS

log = get_logger(__name__)


def planned_work(task: Any, train: int, test: int) -> TaskWork:
    """What ``task`` (a :class:`~condpretrain.downstream.task.DownstreamTask` with the
    run's options) will do on splits of ``train`` and ``test`` images."""
    iterations = task.schedule(train).iterations
    if iterations is None:  # every task counts iterations (its lr is stepped per one)
        raise CondPretrainError(f"{task.name}: its schedule counts no iterations")
    return TaskWork(int(iterations), int(task.precise_bn_iterations()), train, test)


def shortened(options: Any, extendable: tuple[str, ...], iterations: int,
              per_epoch: int) -> Any:
    """``options`` trained for about ``iterations`` iterations, by the task's own length
    option: ``iterations`` itself, or the ``epochs`` of ``per_epoch`` iterations each
    that cover them."""
    fields = {f.name for f in dataclasses.fields(options)}
    if "iterations" in extendable and "iterations" in fields:
        return dataclasses.replace(options, iterations=iterations)
    if "epochs" in extendable and "epochs" in fields:
        return dataclasses.replace(options, epochs=max(math.ceil(iterations / per_epoch), 1))
    raise CondPretrainError(f"calibration: no option sets the length of this task "
                            f"({', '.join(extendable)})")


def calibrate_task(experiment: Experiment, cell: Cell, config: PlanConfig, work: Path
                   ) -> tuple[TaskRate, TaskWork, dict[str, Any]]:
    """A short real run of ``cell``'s downstream task: its rate, the work of the real
    run, and what the calibration ran."""
    options = experiment.target_config(cell, None)
    cls = DOWNSTREAM_TASKS.get_class(cell.task)
    vocs = experiment.config.target_vocs(cell.target)
    started = time.perf_counter()
    task = cls(vocs, options)
    train, test = task.train_items(), task.test_items()
    load_seconds = time.perf_counter() - started
    if not train or not test:
        raise CondPretrainError(f"targets.{cell.target}: a split of "
                                f"{', '.join(map(str, vocs))} lists no images")
    planned = planned_work(task, len(train), len(test))
    wanted = min(config.warmup_steps + config.steps, planned.iterations)
    train_sample = _part(train, wanted * options.batch_size)
    test_sample = _part(test, config.test_images)
    per_epoch = max(len(train_sample) // options.batch_size, 1)
    short = dataclasses.replace(shortened(options, cls.extendable, wanted, per_epoch),
                                device=config.device)

    class Sampled(cls):  # type: ignore[valid-type, misc]
        """The task on the calibration's samples of its splits."""

        def train_items(self) -> list[Any]:
            return train_sample

        def test_items(self) -> list[Any]:
            return test_sample

    calibration = Sampled(vocs, short)
    with StepClock() as clock, CallTimer(Sampled, "evaluate") as evaluation, \
            CallTimer(Sampled, "_precise_bn") as precise:
        result = calibration.run(work / f"{cell.task}-{cell.mode}" / "run")
    ran = planned_work(calibration, len(train_sample), len(test_sample))
    rate = task_rate(clock.starts(), config.warmup_steps, _wall(result), ran,
                     sum(precise.seconds), sum(evaluation.seconds), load_seconds)
    log.info("calibrated %s %s (%s): %.3fs per iteration, %.3fs per test image, %.2fs once",
             cell.task, cell.mode, options.arch, rate.step_seconds, rate.evaluation_seconds,
             rate.fixed_seconds)
    return rate, planned, {**dataclasses.asdict(ran), "load_seconds": round(load_seconds, 3)}


def task_rate(runs: list[list[float]], warmup: int, wall_seconds: float, ran: TaskWork,
              precise_seconds: float, evaluation_seconds: float, load_seconds: float
              ) -> TaskRate:
    """The rate of a run that took ``wall_seconds`` for ``ran``, whose steps started at
    ``runs`` (one run's), its BatchNorm re-estimation and test pass timed apart;
    ``load_seconds`` (reading the real run's split lists) is added to what it pays once.

    ``step``: the mean gap between two steps, the first ``warmup`` left out (a turn
    between epochs among them, as often as the real run has one); ``fixed``: the rest."""
    if len(runs) != 1:  # a task trains one model through the one loop
        raise CondPretrainError(f"calibration: expected one training run, timed {len(runs)}")
    (starts,) = runs
    if len(starts) < 2:
        raise CondPretrainError(f"calibration: {len(starts)} step(s) timed, a rate needs two "
                                "(raise --steps)")
    gaps = np.diff(starts).tolist()
    step = statistics.fmean(gaps[warmup:] or gaps[-1:])
    precise = precise_seconds / ran.precise_bn_batches if ran.precise_bn_batches else 0.0
    evaluation = evaluation_seconds / ran.test_images if ran.test_images else 0.0
    fixed = wall_seconds - len(starts) * step - precise_seconds - evaluation_seconds
    return TaskRate(step, max(fixed, 0.0) + load_seconds, precise, evaluation)


def _part(items: list[Any], count: int) -> list[Any]:
    """``count`` of ``items`` (all of them when fewer), in their order."""
    if len(items) <= count:
        return items
    return [items[i] for i in np.sort(sample(len(items), count))]


def _wall(result: dict[str, Any]) -> float:
    cost = result.get("cost")
    if not isinstance(cost, dict) or "wall_seconds" not in cost:
        raise CondPretrainError("calibration: the task's run recorded no cost")
    return float(cost["wall_seconds"])


__all__ = ["calibrate_task", "planned_work", "shortened", "task_rate"]
