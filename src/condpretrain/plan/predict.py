"""Predicted device-hours of a grid: the runs ``condpretrain run`` will make of it, each
priced with what the calibration measured on this machine.

Pure arithmetic, no timing. A run is described by what it will do (images to cache,
epochs, images per epoch, evaluations, pool images to score), taken from the very configs
the experiment runner builds for each cell, and priced with the rates of :mod:`.rates`.

Work that several cells share is one :class:`Job` named by the folder the runner gives
it (``experiment.grid.Layout``); a cell is charged every job it needs, as ``results.csv``
charges its row, and totals count each job once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from condpretrain.config import FinetuneConfig
from condpretrain.config.select import fused_methods
from condpretrain.experiment.grid import Cell, cells
from condpretrain.experiment.results import BASELINES, ENTIRE_POOL, RANDOM_INIT
from condpretrain.experiment.runner import Experiment
from condpretrain.experiment.target_schema import FINETUNE_TASK
from condpretrain.plan.rates import (
    Rates,
    SelectionRates,
    Sizes,
    epoch_images,
    evaluated_epochs,
    pretrain_key,
    steps_per_epoch,
)
from condpretrain.registry import PRETRAIN_METHODS
from condpretrain.scoring.cost import device_hours
from condpretrain.selection import budget_size
from condpretrain.train.finetune import resolve

STAGES = ("select", "pretrain", "finetune")


@dataclass(frozen=True)
class Job:
    """One piece of work the grid does once: a scoring, a cached model's training, a
    re-selection, a pre-training or fine-tuning run; ``key`` is its folder."""

    key: str
    stage: str
    seconds: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CellPlan:
    """A row of the results table and the jobs it is charged, by stage."""

    cell: Cell
    jobs: dict[str, tuple[str, ...]]


def plan_grid(experiment: Experiment, sizes: dict[str, Sizes], rates: dict[str, Rates]
              ) -> tuple[list[CellPlan], dict[str, Job]]:
    """Every cell of the experiment in the runner's order, and every job, priced with
    its target's sizes and rates."""
    jobs: dict[str, Job] = {}
    plans = []
    for cell in cells(experiment.config):
        size, rate = sizes[cell.target], rates[cell.target]
        stages: dict[str, list[str]] = {stage: [] for stage in STAGES}
        if cell.subset_for:  # a mix's subset, merged from its parts' scores
            stages["select"] += _mix_jobs(experiment, cell, sizes, rates, jobs)
        elif cell.method not in BASELINES:
            stages["select"] += _selection_jobs(experiment, cell, size, rate.selection, jobs)
        if cell.method != RANDOM_INIT:
            stages["pretrain"].append(_pretrain_job(experiment, cell, size, rate, jobs))
        stages["finetune"].append(_finetune_job(experiment, cell, size, rate, jobs))
        plans.append(CellPlan(cell, {stage: tuple(keys) for stage, keys in stages.items()}))
    return plans, jobs


def _selection_jobs(experiment: Experiment, cell: Cell, sizes: Sizes, rates: SelectionRates,
                    jobs: dict[str, Job]) -> list[str]:
    """The scoring (once per target, method and seed; a fusion's parts' first), the
    cached models it uses (once per target and seed), and the re-selection of the
    cell's budget."""
    layout = experiment.layout
    keys = _scoring_jobs(experiment, cell.target, cell.method, cell.seed, sizes, rates, jobs)
    subset = layout.relative(layout.subset_dir(cell.target, cell.method, cell.budget, cell.seed))
    jobs.setdefault(subset, Job(subset, "select", rates.reselect.seconds(sizes.pool),
                                {"pool_images": sizes.pool}))
    return [*keys, subset]


def _mix_jobs(experiment: Experiment, cell: Cell, sizes: dict[str, Sizes],
              rates: dict[str, Rates], jobs: dict[str, Job]) -> list[str]:
    """A mix's subset (``experiment.mixes.mix_selection``): each part's scoring, with the
    part's own rates, and the merge of their scores into the budget's subset, priced as
    a fusion's ranking (:func:`ranking_seconds`)."""
    layout = experiment.layout
    parts = list(experiment.config.mix_of(cell.subset_for) or {})
    keys = [key for part in parts
            for key in _scoring_jobs(experiment, part, cell.method, cell.seed, sizes[part],
                                     rates[part].selection, jobs)]
    merge = layout.relative(layout.subset_dir(cell.subset_for, cell.method, cell.budget,
                                              cell.seed))
    pool = sizes[cell.target].pool
    jobs.setdefault(merge, Job(merge, "select",
                               ranking_seconds(rates[cell.target].selection, parts, pool),
                               {"pool_images": pool, "merged": parts}))
    return [*dict.fromkeys(keys), merge]


def ranking_seconds(rates: SelectionRates, parts: list[str], pool: int) -> float:
    """Ranking saved scores of ``parts`` into one (a fusion, a mix's merge): it lists the
    pool, then reads each part's pool list and scores, ranks and writes its outputs, a
    re-selection's work per part (its own is not calibrated)."""
    return rates.index_seconds + len(parts) * rates.reselect.seconds(pool)


def _scoring_jobs(experiment: Experiment, target: str, method: str, seed: int, sizes: Sizes,
                  rates: SelectionRates, jobs: dict[str, Job]) -> list[str]:
    """The jobs of (target, method, seed)'s scores, as ``experiment.selections.scored``
    makes them: a method's scoring and cached models; a fusion's parts' and its own
    ranking of their saved scores."""
    layout = experiment.layout
    scoring = layout.relative(layout.scores_dir(target, method, seed))
    parts = fused_methods(method)
    if parts:
        keys = [key for part in parts
                for key in _scoring_jobs(experiment, target, part, seed, sizes, rates, jobs)]
        jobs.setdefault(scoring, Job(scoring, "select",
                                     ranking_seconds(rates, parts, sizes.pool),
                                     {"pool_images": sizes.pool, "fused": parts}))
        return [*dict.fromkeys(keys), scoring]
    config = experiment.select_config(target, method, seed)
    rate = rates.methods[method]
    chunks = max(1, -(-sizes.pool // config.chunk_size))
    spent = {"index": rates.index_seconds, "select": rates.every.seconds(sizes.pool),
             "fit": rate.fit_seconds, "score": rate.score.seconds(sizes.pool, calls=chunks)}
    jobs.setdefault(scoring, Job(scoring, "select", sum(spent.values()),
                                 {"pool_images": sizes.pool, "chunks": chunks,
                                  **{k: round(v, 3) for k, v in spent.items()}}))
    keys = [scoring]
    for kind in rate.models:
        key = f"{layout.relative(layout.cache_dir(target))}/{kind}-seed{seed}"
        if kind in rates.embeddings:  # the pool's, computed once per features
            jobs.setdefault(key, Job(key, "select", rates.embeddings[kind].seconds(sizes.pool),
                                     {"pool_images": sizes.pool}))
        else:
            model = rates.models[kind]
            jobs.setdefault(key, Job(key, "select", model.seconds(config),
                                     {"epochs": model.epochs(config)}))
        keys.append(key)
    return keys


def _pretrain_job(experiment: Experiment, cell: Cell, sizes: Sizes, rates: Rates,
                  jobs: dict[str, Job]) -> str:
    layout = experiment.layout
    key = layout.relative(layout.pretrain_dir(cell))
    config = experiment.pretrain_config(cell)
    method = PRETRAIN_METHODS.get_class(cell.mode)(config)
    images = sizes.pool if cell.method == ENTIRE_POOL else budget_size(sizes.pool, cell.budget,
                                                                       None)
    trained = epoch_images(images, config.batch_size, method.drop_last)
    cache = rates.pretrain_cache[cell.resolution].seconds(images) if config.cache else 0.0
    run = rates.pretrain[pretrain_key(cell.mode, cell.resolution)]
    jobs.setdefault(key, Job(key, "pretrain", cache + run.seconds(method.epochs, trained),
                             {"images": images, "epochs": method.epochs,
                              "steps_per_epoch": steps_per_epoch(images, config.batch_size,
                                                                 method.drop_last),
                              "cache_seconds": round(cache, 3)}))
    return key


def finetune_recipe(experiment: Experiment, cell: Cell) -> FinetuneConfig:
    """The fine-tuning options the runner gives ``cell``, its epochs and lr resolved."""
    pretrained = cell.method != RANDOM_INIT
    config = experiment.finetune_config(cell, Path("backbone.pt") if pretrained else None)
    # The backbone does not exist yet: its method is the cell's mode (what `auto` reads
    # from its run.json once it does).
    kind = config.backbone if config.backbone != "auto" else (cell.mode if pretrained
                                                              else "random")
    resolved, _ = resolve(dataclasses.replace(config, backbone=kind))
    return resolved


def _finetune_job(experiment: Experiment, cell: Cell, sizes: Sizes, rates: Rates,
                  jobs: dict[str, Job]) -> str:
    layout = experiment.layout
    key = layout.relative(layout.finetune_dir(cell))
    if cell.task != FINETUNE_TASK:  # its downstream task trains on the target instead
        work = rates.task_work[cell.mode]
        jobs.setdefault(key, Job(key, "finetune", rates.tasks[cell.mode].seconds(work),
                                 {"task": cell.task, **dataclasses.asdict(work)}))
        return key
    config = finetune_recipe(experiment, cell)
    assert config.epochs is not None  # resolve() fills it
    trained = epoch_images(sizes.target_train, config.batch_size, drop_last=False)
    images = sizes.target_train + sizes.target_test
    cache = (rates.finetune_cache[config.resolution].seconds(
        images, calls=2 if sizes.target_test else 1) if config.cache else 0.0)
    run = rates.finetune[cell.mode]
    evaluations = evaluated_epochs(config.epochs, config.eval_every)
    jobs.setdefault(key, Job(key, "finetune",
                             cache + run.seconds(config.epochs, trained, evaluations),
                             {"images": sizes.target_train, "test_images": sizes.target_test,
                              "epochs": config.epochs, "evaluations": evaluations,
                              "steps_per_epoch": steps_per_epoch(sizes.target_train,
                                                                 config.batch_size, False),
                              "cache_seconds": round(cache, 3)}))
    return key


# --------------------------------------------------------------------------- device-hours


@dataclass(frozen=True)
class CellCost:
    """A cell's predicted charges (device-hours by stage, as its results row will
    have them), what it adds to the grid's cost in the runner's order, and whether the
    grid reaches it within the hours available (None: no hours given)."""

    plan: CellPlan
    charged: dict[str, float]
    added: float
    cumulative: float
    fits: bool | None


def schedule(plans: list[CellPlan], jobs: dict[str, Job], hours: float | None,
             processes: int = 1) -> list[CellCost]:
    """Cells in the order ``condpretrain run`` runs them (the grid's order: baselines,
    then budgets x methods, per target, mode, seed and resolution), each adding the
    jobs no earlier cell needed; a cell fits when the grid's cost up to it does."""
    done: set[str] = set()
    total = 0.0
    costs = []
    for plan in plans:
        keys = [k for stage in STAGES for k in plan.jobs[stage]]
        added = device_hours(sum(jobs[k].seconds for k in dict.fromkeys(keys) if k not in done),
                             processes)
        done.update(keys)
        total += added
        charged = {stage: device_hours(sum(jobs[k].seconds for k in plan.jobs[stage]), processes)
                   for stage in STAGES}
        costs.append(CellCost(plan, charged, added, total,
                              None if hours is None else total <= hours))
    return costs


def totals(plans: list[CellPlan], jobs: dict[str, Job], processes: int = 1,
           once: bool = True) -> dict[str, float]:
    """Device-hours by stage and in all: each job once, or (``once`` False) the sum of
    what the cells are charged, as ``results.total_device_hours`` counts them."""
    by_stage = {}
    for stage in STAGES:
        keys = [k for plan in plans for k in plan.jobs[stage]]
        if once:
            keys = list(dict.fromkeys(keys))
        by_stage[stage] = device_hours(sum(jobs[k].seconds for k in keys), processes)
    return {**by_stage, "total": sum(by_stage.values())}


__all__ = ["STAGES", "Job", "CellPlan", "CellCost", "finetune_recipe", "plan_grid",
           "ranking_seconds", "schedule", "totals"]
