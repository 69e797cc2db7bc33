"""Calibration of the training runs: a short real ``pretrain`` per (mode, resolution), a
short real ``finetune`` per mode, and the image caches they build, on this machine.

Each run is the one the experiment runner would make of the cell (same model,
augmentation, batch size, workers, precision and cache), shortened to a few epochs of a
sample of the real images: ``warmup + steps`` optimizer steps or more, over
:data:`MIN_EPOCHS` epochs or more, so that the steady step, what happens between epochs
(loader start-up, evaluation, checkpoint) and what happens once are all measured
(:func:`~condpretrain.plan.clock.run_rate`). The image caches are built beforehand at two
sizes, so their fixed and per-image costs are apart; the runs then reuse them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from condpretrain.config import PlanConfig
from condpretrain.data.cache import build_cache, stored_size
from condpretrain.data.sources import ImageIndex, Target, open_target, write_index_csv
from condpretrain.errors import CondPretrainError
from condpretrain.experiment.grid import Cell
from condpretrain.experiment.runner import Experiment
from condpretrain.log import get_logger
from condpretrain.plan.clock import CallTimer, StepClock, run_rate
from condpretrain.plan.predict import finetune_recipe
from condpretrain.plan.rates import LinearCost, RunRate, epoch_images, steps_per_epoch
from condpretrain.registry import PRETRAIN_METHODS
from condpretrain.train import finetune as finetuning
from condpretrain.train.pretrain import pretrain

log = get_logger(__name__)

WARM_CACHE_IMAGES = 2  # a first tiny build pays the one-time costs (imports, first decode)
# Epochs of a calibration run at least: what happens between two epochs is timed at
# each turn, and three turns average out a disturbance (another job's) better than one.
MIN_EPOCHS = 4


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How long a calibration run trains: ``images`` per epoch for ``epochs`` epochs,
    ``steps`` optimizer steps each, the last ``last_batch`` of a full batch."""

    images: int
    epochs: int
    steps: int
    last_batch: float = 1.0


def calibration_schedule(images: int, batch_size: int, drop_last: bool, config: PlanConfig,
                         run_epochs: int) -> Schedule:
    """At least ``warmup + steps`` steps over at least :data:`MIN_EPOCHS` epochs, on as
    few images as that needs: all of them when an epoch of them is short; but never more
    epochs than the real run's ``run_epochs`` (unless to reach :data:`MIN_EPOCHS`): a
    calibration is not to cost more than the run it prices."""
    wanted = config.warmup_steps + config.steps
    share = math.ceil(wanted / MIN_EPOCHS)
    if steps_per_epoch(images, batch_size, drop_last) > share:
        images = share * batch_size
    per_epoch = max(steps_per_epoch(images, batch_size, drop_last), 1)
    last = epoch_images(images, batch_size, drop_last) - (per_epoch - 1) * batch_size
    epochs = min(math.ceil(wanted / per_epoch), run_epochs)
    return Schedule(images, max(MIN_EPOCHS, epochs), per_epoch, last / batch_size)


def sample(count: int, size: int, seed: int = 0) -> np.ndarray:
    """``size`` distinct indices of ``count`` (all of them, shuffled, when fewer)."""
    return np.random.default_rng(seed).permutation(count)[:size]


def cache_cost(paths: list[str], extra: list[str], size: int, folder: Path, workers: int,
               max_pixels: int) -> LinearCost:
    """Build the cache of ``paths`` at ``size`` in ``folder`` (where the calibration run
    then finds it), after a smaller build of ``extra`` (other images where there are
    any): the two builds give the fixed and the per-image cost."""
    build_cache(extra[:WARM_CACHE_IMAGES], size, folder / "warm", workers, max_pixels)
    small = extra[WARM_CACHE_IMAGES:] or extra
    points = [(len(small), build_cache(small, size, folder / "small", workers,
                                       max_pixels).build_seconds)]
    points.append((len(paths), build_cache(paths, size, folder, workers,
                                           max_pixels).build_seconds))
    return LinearCost.through(points)


def _other_images(pool: ImageIndex, chosen: np.ndarray, count: int) -> list[str]:
    """``count`` pool images not in ``chosen`` (from ``chosen`` when the pool is small)."""
    rest = np.setdiff1d(np.arange(len(pool)), chosen)
    picked = rest[:count] if len(rest) >= count else chosen[:count]
    return [pool.paths[i] for i in picked]


def calibrate_pretrain(experiment: Experiment, cell: Cell, pool: ImageIndex,
                       config: PlanConfig, work: Path) -> tuple[RunRate, LinearCost, dict]:
    """A short real ``pretrain`` of the cell's mode and resolution on a pool sample."""
    run_config = experiment.pretrain_config(cell)
    method = PRETRAIN_METHODS.get_class(cell.mode)(run_config)
    plan = calibration_schedule(len(pool), run_config.batch_size, method.drop_last, config,
                                method.epochs)
    chosen = sample(len(pool), plan.images)
    subset = pool.take(chosen)
    folder = work / f"pretrain-{cell.mode}-{cell.resolution}"
    cache = LinearCost()
    if run_config.cache:
        small = max(len(subset) // 4, 1) + WARM_CACHE_IMAGES
        cache = cache_cost(subset.paths, _other_images(pool, chosen, small),
                           stored_size(run_config.resolution), folder / "cache",
                           run_config.workers, run_config.max_image_pixels)
    write_index_csv(folder / "subset.csv", subset)
    short = dataclasses.replace(run_config, epochs=plan.epochs, device=config.device,
                                cache_dir=str(folder / "cache"), init=None)
    with StepClock() as clock:
        result = pretrain(experiment.config.pool, folder / "run", short,
                          subset=folder / "subset.csv")
    rate = _rate(clock, plan, config, result.cost, short.batch_size)
    log.info("calibrated pretrain %s at %dpx: %.1f img/s, %.2fs between epochs, %.2fs once",
             cell.mode, cell.resolution, rate.images_per_second, rate.epoch_seconds,
             rate.fixed_seconds)
    return rate, cache, {"images": plan.images, "epochs": plan.epochs,
                         "steps_per_epoch": plan.steps}


def calibrate_finetune(experiment: Experiment, cell: Cell, target: Target,
                       config: PlanConfig, work: Path) -> tuple[RunRate, LinearCost, dict]:
    """A short real ``finetune`` of the cell's arch and recipe on (a sample of) the
    target's train split and its whole test split (every epoch evaluates on it)."""
    run_config = experiment.finetune_config(cell, None)
    recipe = finetune_recipe(experiment, cell)
    assert recipe.epochs is not None  # resolved
    plan = calibration_schedule(len(target.train), run_config.batch_size, False, config,
                                recipe.epochs)
    folder = work / f"finetune-{cell.mode}"
    spec = _target_sample(experiment.config.target_path(cell.target), target, plan.images,
                          folder)
    opened = open_target(spec)
    cache_folder = work / f"finetune-cache-{run_config.resolution}"
    cache = LinearCost()
    if run_config.cache:
        cache = _target_cache(opened, stored_size(run_config.resolution), cache_folder,
                              run_config.workers, run_config.max_image_pixels)
    # every epoch evaluated, each pass timed: a run that evaluates less often is then
    # priced with fewer of them
    short = dataclasses.replace(run_config, epochs=plan.epochs, device=config.device,
                                cache_dir=str(cache_folder), eval_every=1)
    with StepClock() as clock, CallTimer(finetuning, "test_scores") as evaluations:
        result = finetuning.finetune(spec, folder / "run", short)
    rate = _rate(clock, plan, config, result.cost, short.batch_size, evaluations.seconds)
    log.info("calibrated finetune %s (%s at %dpx): %.1f img/s, %.2fs between epochs, "
             "%.2fs per evaluation, %.2fs once", cell.mode, run_config.arch,
             run_config.resolution, rate.images_per_second, rate.epoch_seconds,
             rate.evaluation_seconds, rate.fixed_seconds)
    return rate, cache, {"images": len(opened.train), "epochs": plan.epochs,
                         "steps_per_epoch": plan.steps,
                         "test_images": len(opened.test) if opened.test else 0}


def _target_cache(target: Target, size: int, folder: Path, workers: int,
                  max_pixels: int) -> LinearCost:
    """Both of the target's caches, built as a fine-tuning run builds them (train, then
    test): two sizes, so fixed and per-image costs come apart."""
    build_cache(target.train.paths[:WARM_CACHE_IMAGES], size, folder / "warm", workers,
                max_pixels)
    splits = [target.train] + ([target.test] if target.test is not None else [])
    points = [(len(split), build_cache(split.paths, size, folder, workers,
                                       max_pixels).build_seconds) for split in splits]
    if len({n for n, _ in points}) == 1:  # one size: add a smaller build
        part = target.train.paths[:max(len(target.train) // 4, 1)]
        points.append((len(part), build_cache(part, size, folder / "small", workers,
                                              max_pixels).build_seconds))
    return LinearCost.through(points)


def _target_sample(spec: str, target: Target, train_images: int, folder: Path) -> str:
    """The target ``spec`` itself when its train split is no larger than
    ``train_images``, else a manifest of a sample of its train split and its whole test
    split."""
    if len(target.train) <= train_images:
        return spec
    chosen = np.sort(sample(len(target.train), train_images))
    return write_target(Target(target.name, target.train.take(chosen), target.test),
                        folder / f"{target.name}.csv")


def write_target(target: Target, manifest: Path) -> str:
    """``target``'s train and test splits as a manifest (``path,label,pool,split``) that
    a command opens: its spec."""
    splits = {"train": target.train}
    if target.test is not None:
        splits["test"] = target.test
    write_index_csv(manifest, ImageIndex.concat(list(splits.values())),
                    split=np.repeat(list(splits), [len(index) for index in splits.values()]))
    return f"{target.name}={manifest}"


def _rate(clock: StepClock, plan: Schedule, config: PlanConfig, cost: dict[str, Any],
          batch_size: int, evaluations: Sequence[float] = ()) -> RunRate:
    runs = clock.starts()
    if len(runs) != 1:  # a run trains one model through the one loop
        raise CondPretrainError(f"calibration: expected one training run, timed {len(runs)}")
    (starts,) = runs
    seconds = float(cost.get("wall_seconds", 0.0)) - float(cost.get("cache_seconds", 0.0))
    return run_rate(starts, plan.epochs, config.warmup_steps, seconds, batch_size,
                    plan.last_batch, evaluations)


__all__ = ["MIN_EPOCHS", "Schedule", "calibration_schedule", "sample", "cache_cost",
           "calibrate_pretrain", "calibrate_finetune", "write_target"]
