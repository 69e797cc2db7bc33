"""``condpretrain plan``: calibrate on this machine, predict the grid, write ``OUT/plan.json``.

The grid is built as an experiment file with the same settings would build it
(:func:`~condpretrain.experiment.schema.parse_experiment`), so the cells, their order and
every run's config are the runner's own. Calibration runs in a scratch folder under
``OUT`` that is removed afterwards.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from condpretrain.config import PlanConfig, build_config, to_dict
from condpretrain.data.sources import ImageIndex, Target, open_pool, open_target, parse_spec
from condpretrain.device import device_kind, resolve_device
from condpretrain.experiment.grid import Cell
from condpretrain.experiment.preflight import check_grid
from condpretrain.experiment.results import KEY_COLUMNS
from condpretrain.experiment.runner import Experiment
from condpretrain.experiment.schema import ExperimentConfig, parse_experiment
from condpretrain.experiment.target_schema import FINETUNE_TASK
from condpretrain.log import get_logger
from condpretrain.plan.calibrate import calibrate_finetune, calibrate_pretrain
from condpretrain.plan.calibrate_select import calibrate_selection
from condpretrain.plan.calibrate_task import calibrate_task
from condpretrain.plan.predict import (
    STAGES,
    CellCost,
    Job,
    plan_grid,
    schedule,
    totals,
)
from condpretrain.plan.rates import (
    LinearCost,
    Rates,
    RunRate,
    Sizes,
    TaskRate,
    TaskWork,
    pretrain_key,
)
from condpretrain.plan.record import PLAN_FILE, STAGE_COLUMNS, write_plan

log = get_logger(__name__)

PROCESSES = 1  # the calibration measures one process on one device
# The plan's options that an experiment file holds, under the same names.
SECTION_KEYS = ("select", "pretrain", "finetune", "detect", "segment")
GRID_KEYS = ("methods", "budgets", "resolutions", "modes", "seeds", "baselines",
             *SECTION_KEYS)
# What an experiment file sets: with one, the plan's options say only how to calibrate.
FILE_KEYS = (*GRID_KEYS, "task", "voc")


@dataclass
class PlanResult:
    """What the plan predicts; ``cells`` in the order ``condpretrain run`` runs them."""

    path: Path  # OUT/plan.json
    device: str
    cells: list[CellCost]
    once: dict[str, float]  # device-hours by stage, shared work counted once
    charged: dict[str, float]  # the sum of what the rows will be charged
    hours: float | None
    calibration_seconds: float


def make_plan(sources: list[str] | str, target: str, out: str | Path,
              config: PlanConfig | None = None, preset: str = "paper") -> PlanResult:
    """Calibrate, predict every cell's device-hours, and write ``OUT/plan.json``."""
    config = config or build_config(PlanConfig, preset)
    config.validate()
    sources = [sources] if isinstance(sources, str) else list(sources)
    grid = experiment_config(sources, target, config, preset)
    return plan_experiment(grid, out, config, {"sources": sources, "target": target})


def plan_experiment(grid: ExperimentConfig, out: str | Path, config: PlanConfig,
                    described: dict[str, Any]) -> PlanResult:
    """Calibrate on this machine for every target of ``grid``, predict every cell's
    device-hours, and write ``OUT/plan.json`` (``described``: how the grid was given)."""
    config.validate()
    out = Path(out)
    experiment = Experiment(grid, out)
    started = time.perf_counter()
    pool, targets, index_seconds = _listed(experiment)
    check_grid(experiment)  # what `run` refuses at its start, refused before calibrating
    work = out / f".plan-calibration-{os.getpid()}"
    try:
        rates, measured = calibrate(experiment, pool, targets, index_seconds, config, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    calibration_seconds = time.perf_counter() - started
    sizes = {name: _sizes(pool, target) for name, target in targets.items()}
    plans, jobs = plan_grid(experiment, sizes, rates)
    costs = schedule(plans, jobs, config.hours, PROCESSES)
    once, charged = totals(plans, jobs, PROCESSES), totals(plans, jobs, PROCESSES, once=False)
    device = device_kind(resolve_device(config.device))
    path = out / PLAN_FILE
    write_plan(path, {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "device": device,
        "processes": PROCESSES, "preset": grid.preset, **described,
        "config": to_dict(config), "hours": config.hours,
        "sizes": {"pool": len(pool), "targets": {name: {"train": size.target_train,
                                                        "test": size.target_test}
                                                 for name, size in sizes.items()}},
        "calibration": {"seconds": round(calibration_seconds, 3),
                        "rates": _rates_json(rates), "runs": measured},
        "cells": [cell_entry(cost) for cost in costs],
        "jobs": [_job_entry(job) for job in jobs.values()],
        "totals": {"once": once, "charged": charged},
        "fits": fits_summary(costs),
    })
    log.info("plan: %d cells, %.4g device-hours (shared work once) -> %s", len(costs),
             once["total"], path)
    return PlanResult(path, device, costs, once, charged, config.hours, calibration_seconds)


def _sizes(pool: ImageIndex, target: Target) -> Sizes:
    return Sizes(len(pool), len(target.train),
                 len(target.test) if target.test is not None else 0)


def experiment_config(sources: list[str], target: str, config: PlanConfig, preset: str
                      ) -> ExperimentConfig:
    """The experiment file the plan stands for, checked as one (sections included)."""
    name, path = parse_spec(target)
    spec: str | dict[str, Any] = str(path)
    if config.task != FINETUNE_TASK:
        spec = {"path": str(path), "task": config.task, **({"voc": config.voc}
                                                          if config.voc else {})}
    data = {"name": "plan", "pool": sources, "targets": {name: spec}, "preset": preset,
            **{key: getattr(config, key) for key in GRID_KEYS}}
    return parse_experiment(data, where="--" + "/--".join(SECTION_KEYS), base=Path.cwd())


def _listed(experiment: Experiment) -> tuple[ImageIndex, dict[str, Target], dict[str, float]]:
    """The pool and the targets, and what listing them costs each ``select`` (the second
    listing: every run after the first finds the folder listings cached)."""
    config = experiment.config
    # a mix has no folder: its parts are targets of the file, listed as such
    specs = {name: config.target_path(name) for name in config.targets
             if config.mix_of(name) is None}
    open_pool(config.pool)
    started = time.perf_counter()
    pool = open_pool(config.pool)
    pool_seconds = time.perf_counter() - started
    targets, seconds = {}, {}
    for name, spec in specs.items():
        open_target(spec)
        started = time.perf_counter()
        targets[name] = open_target(spec)
        seconds[name] = pool_seconds + time.perf_counter() - started
    return pool, targets, seconds


def calibrate(experiment: Experiment, pool: ImageIndex, targets: dict[str, Target],
              index_seconds: dict[str, float], config: PlanConfig, work: Path
              ) -> tuple[dict[str, Rates], dict[str, Any]]:
    """Every rate the grid's prediction needs, measured with short real runs: the
    pre-training's once (the pool's), the rest per target."""
    grid = experiment.config
    seed = grid.seeds[0]
    first = next(iter(targets))
    pretrain: dict[str, RunRate] = {}
    pretrain_cache: dict[int, LinearCost] = {}
    runs: dict[str, Any] = {"pretrain": {}, "targets": {}}
    for mode in grid.modes:
        for resolution in grid.resolutions:
            cell = Cell(first, mode, resolution, min(grid.budgets), grid.methods[0], seed)
            rate, cache, run = calibrate_pretrain(experiment, cell, pool, config, work)
            key = pretrain_key(mode, resolution)
            pretrain[key] = rate
            pretrain_cache.setdefault(resolution, cache)  # later builds find it made
            runs["pretrain"][key] = run
    rates = {}
    for name, target in targets.items():
        rates[name], runs["targets"][name] = _target_rates(
            experiment, name, pool, target, index_seconds[name], config,
            work / f"target-{len(rates)}", (pretrain, pretrain_cache))
    return rates, runs


def _target_rates(experiment: Experiment, name: str, pool: ImageIndex, target: Target,
                  index_seconds: float, config: PlanConfig, work: Path,
                  pretraining: tuple[dict[str, RunRate], dict[int, LinearCost]]
                  ) -> tuple[Rates, dict[str, Any]]:
    """A target's rates: its selection's, and per mode its fine-tuning's or its
    downstream task's; the pre-training's, shared."""
    grid = experiment.config
    selection, select_runs = calibrate_selection(experiment, name, pool, target,
                                                 index_seconds, config, work)
    finetune: dict[str, RunRate] = {}
    finetune_cache: dict[int, LinearCost] = {}
    tasks: dict[str, TaskRate] = {}
    task_work: dict[str, TaskWork] = {}
    runs: dict[str, Any] = {"select": select_runs, "finetune": {}}
    task = grid.target_task(name)
    for mode in grid.modes:
        cell = Cell(name, mode, grid.resolutions[0], min(grid.budgets), grid.methods[0],
                    grid.seeds[0], task=task)
        if task != FINETUNE_TASK:  # the target's downstream task trains instead
            tasks[mode], task_work[mode], runs["finetune"][mode] = calibrate_task(
                experiment, cell, config, work)
            continue
        rate, cache, run = calibrate_finetune(experiment, cell, target, config, work)
        finetune[mode] = rate
        finetune_cache.setdefault(experiment.finetune_config(cell, None).resolution, cache)
        runs["finetune"][mode] = run
    return Rates(selection, *pretraining, finetune, finetune_cache, tasks, task_work), runs


def cell_entry(cost: CellCost) -> dict[str, Any]:
    """A cell of plan.json: its results-row key and the device-hours it will be charged."""
    cell = cost.plan.cell
    return {**dict(zip(KEY_COLUMNS, cell.key, strict=True)), "label": cell.label,
            **{STAGE_COLUMNS[stage]: cost.charged[stage] for stage in STAGES},
            "device_hours": sum(cost.charged.values()), "added_device_hours": cost.added,
            "cumulative_device_hours": cost.cumulative, "fits": cost.fits,
            "jobs": {stage: list(keys) for stage, keys in cost.plan.jobs.items()}}


def _job_entry(job: Job) -> dict[str, Any]:
    return {"key": job.key, "stage": job.stage, "seconds": round(job.seconds, 3),
            **job.detail}


def _rates_json(rates: dict[str, Rates]) -> dict[str, Any]:
    """The measured rates, the pre-training's once, with images per second beside each
    training step."""
    data: dict[str, Any] = {"targets": {}}
    for name, target_rates in rates.items():
        each = dataclasses.asdict(target_rates)
        for group in ("pretrain", "finetune"):
            for key, rate in getattr(target_rates, group).items():
                each[group][key]["images_per_second"] = round(rate.images_per_second, 2)
        data.update(pretrain=each.pop("pretrain"), pretrain_cache=each.pop("pretrain_cache"))
        data["targets"][name] = each
    return data


def fits_summary(costs: list[CellCost]) -> dict[str, Any] | None:
    """How many cells fit in the hours, and the device-hours they take; None when no
    hours were given."""
    if not costs or costs[0].fits is None:
        return None
    fitting = [c for c in costs if c.fits]
    return {"cells": len(fitting), "of": len(costs),
            "device_hours": fitting[-1].cumulative if fitting else 0.0}


__all__ = ["PlanResult", "GRID_KEYS", "FILE_KEYS", "make_plan", "plan_experiment",
           "experiment_config", "calibrate", "cell_entry", "fits_summary"]
