"""Running a grid: every cell runs select -> pretrain -> finetune (or, for a downstream
target, its task: detect, segment) and adds one row to ``OUT/results.csv``.

Resuming: a cell whose row is already in ``results.csv`` is skipped; an artefact that
finished (scores, a subset, a backbone, a fine-tune) is read back instead of recomputed;
an unfinished training run is continued from its checkpoint (``resume=True``). Which
cells share an artefact is decided by its folder (see :mod:`.grid`). A cluster runs the
same work as jobs, one step each (:mod:`.steps`): :meth:`Experiment.run_step`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from condpretrain import atomic, runlock
from condpretrain.config import (
    FinetuneConfig,
    PretrainConfig,
    SelectConfig,
    build_config,
    options,
)
from condpretrain.downstream.task import run_task
from condpretrain.errors import CondPretrainError
from condpretrain.experiment import mixes, preflight, selections
from condpretrain.experiment.grid import Cell, Layout, cells, run_finished, run_started
from condpretrain.experiment.results import (
    BASELINES,
    ENTIRE_POOL,
    KEY_COLUMNS,
    RANDOM_INIT,
    RESULTS_FILE,
    Row,
    cell_text,
    read_results,
    row_key,
    total_device_hours,
    write_results,
)
from condpretrain.experiment.schema import ExperimentConfig, load_experiment, section_values
from condpretrain.experiment.selections import (
    CellSelection,
    ScoringCharge,
    read_object,
    scoring_charge,
    selection_seconds,
)
from condpretrain.experiment.steps import (
    COLLECT,
    FINETUNE,
    PRETRAIN,
    SELECT,
    Step,
    done_keys,
    pending,
)
from condpretrain.experiment.target_schema import FINETUNE_TASK
from condpretrain.log import get_logger, progress_bar
from condpretrain.multi_target import merge_selections
from condpretrain.registry import DOWNSTREAM_TASKS, PRETRAIN_METHODS
from condpretrain.selection import reselect, select
from condpretrain.train.finetune import finetune
from condpretrain.train.pretrain import pretrain

log = get_logger(__name__)

SETTINGS_FILE = "experiment.yaml"  # OUT's copy of the experiment: what a cluster job reads


def settings_keys() -> list[str]:
    """Keys of the experiment file that change what a finished cell means: all but the
    grid's axes (which may grow into the same folder) and the neutral ones (a label)."""
    return [o.name for o in options(ExperimentConfig) if not (o.grid or o.neutral)]


@dataclass
class Steps:
    """The pipeline functions a grid calls; tests swap in fakes to count calls."""

    select: Callable[..., Any]
    reselect: Callable[..., Any]
    pretrain: Callable[..., Any]
    finetune: Callable[..., Any]
    # a mixed target's subset from its parts' saved scores (scores nothing, so the
    # fakes of the other four need none of their own)
    merge: Callable[..., Any] = merge_selections
    # a downstream target's training: run_task(task, voc_folders, out, config, resume)
    downstream: Callable[..., Any] = run_task

    @staticmethod
    def default() -> Steps:
        return Steps(select, reselect, pretrain, finetune, merge_selections, run_task)

    @staticmethod
    def refusing() -> Steps:
        """Steps that only read: the job that collects a grid other jobs computed must
        not start training (on a CPU, for days) if something is missing."""
        def unfinished(kind: str, out_arg: int) -> Callable[..., Any]:
            def refuse(*args: Any, **_: Any) -> Any:
                raise CondPretrainError(f"collect: {args[out_arg]} is not finished: its {kind} "
                                        "step failed or did not run; run the grid again")
            return refuse

        return Steps(unfinished("select", 2), unfinished("select", 1),
                     unfinished("pretrain", 1), unfinished("finetune", 1),
                     unfinished("select", 2), unfinished("downstream", 2))


@dataclass
class ExperimentResult:
    out_dir: Path
    results_csv: Path
    rows: list[Row]
    ran: int  # cells computed by this call
    skipped: int  # cells already in results.csv


@dataclass
class GridCheck:
    """What ``run --check`` found: the grid's cells, those already in results.csv, and
    the steps left by kind (select, pretrain, the target's task: finetune, detect...)."""

    cells: int
    done: int
    steps: dict[str, int]


class Experiment:
    """Runs a grid into ``out``; every artefact lives under it (see :class:`Layout`)."""

    def __init__(self, config: ExperimentConfig, out: str | Path, steps: Steps | None = None):
        self.config = config
        self.out = Path(out)
        self.layout = Layout(self.out)
        self.steps = steps or Steps.default()

    # Configs of one cell: preset -> experiment sections -> the target's own -> what the
    # grid sets.
    def select_config(self, target: str, method: str, seed: int) -> SelectConfig:
        # Selection is mode-free; the scores serve every budget, so the smallest is asked
        # for (each budget then re-selects from the saved scores). A fusion reads its
        # parts' scores from the grid's folders.
        return build_config(SelectConfig, self.config.preset,
                            **{**section_values(self.config, "select", target=target),
                               "method": method, "seed": seed,
                               "fraction": min(self.config.budgets),
                               "cache_dir": str(self.layout.cache_dir(target)),
                               "fuse_from": selections.fuse_from(self, target, method, seed)})

    def pretrain_config(self, cell: Cell) -> PretrainConfig:
        return build_config(PretrainConfig, self.config.preset,
                            **{**section_values(self.config, "pretrain", cell.mode),
                               "mode": cell.mode, "resolution": cell.resolution or None,
                               "seed": cell.seed})

    def finetune_config(self, cell: Cell, init: Path | None) -> FinetuneConfig:
        return build_config(FinetuneConfig, self.config.preset,
                            **{**section_values(self.config, "finetune", cell.mode, cell.target),
                               "arch": self.pretrained_arch(cell.mode), "seed": cell.seed,
                               "init": str(init) if init else None})

    def target_config(self, cell: Cell, init: Path | None) -> Any:
        """The options of the command that trains on ``cell``'s target: ``finetune``'s,
        or its downstream task's, whose backbone is the pre-trained one."""
        if cell.task == FINETUNE_TASK:
            return self.finetune_config(cell, init)
        return build_config(DOWNSTREAM_TASKS.get_class(cell.task).config_class,
                            self.config.preset,
                            **{**section_values(self.config, cell.task, cell.mode, cell.target),
                               "arch": self.pretrained_arch(cell.mode), "seed": cell.seed,
                               "init": str(init) if init else None})

    def pretrained_arch(self, mode: str) -> str:
        """The fine-tuned network must be the pre-trained one, so its arch is the mode's:
        the one the experiment sets, else the method's own default."""
        config = build_config(PretrainConfig, self.config.preset,
                              **{**section_values(self.config, "pretrain", mode), "mode": mode})
        return config.arch or PRETRAIN_METHODS.get_class(mode).arch

    def run(self) -> ExperimentResult:
        with runlock.hold(self.out):  # one grid at a time into a folder
            return self._run()

    def _run(self) -> ExperimentResult:
        self.prepare()
        results = self.out / RESULTS_FILE
        rows = read_results(results)
        done = {row_key(r) for r in rows}
        grid = cells(self.config)
        todo = [c for c in grid if c.key not in done]
        skipped = len(grid) - len(todo)
        log.info("experiment %s: %d cells, %d already done", self.config.name, len(grid), skipped)
        with progress_bar(len(grid), desc="experiment", unit="cell", initial=skipped) as bar:
            for cell in todo:
                bar.set_description(f"experiment: {cell.label}")
                log.info("cell %s", cell.label)
                rows.append(self.run_cell(cell))
                write_results(results, rows)  # after every cell: a kill loses one at most
                bar.update(1)
        log.info("experiment cost: %.4g device-hours, shared work counted once (%.4g summed "
                 "over cells)", total_device_hours(rows)["total"],
                 total_device_hours(rows, once=False)["total"])
        return ExperimentResult(self.out, results, rows, len(todo), skipped)

    def prepare(self) -> None:
        """Check the folder's earlier settings and what would fail cells later (see
        :mod:`.preflight`), then save these settings (under the folder's lock)."""
        self.check_start()
        atomic.write_text(self.out / SETTINGS_FILE, self.config.to_yaml())

    def check_start(self) -> None:
        """The folder's earlier settings, and the targets' labels and data."""
        self.check_same_settings()
        preflight.check_grid(self)

    def check(self) -> GridCheck:
        """What :meth:`prepare` checks, writing nothing, and the work left: ``run
        --check`` before a long grid or a submission."""
        self.check_start()
        done = done_keys(self.out)
        steps = pending(self.config, self.layout)
        left: dict[str, int] = {}
        for step in steps.values():
            if step.kind == COLLECT:  # bookkeeping, not work
                continue
            kind = step.cell.task if step.kind == FINETUNE else step.kind
            left[kind] = left.get(kind, 0) + 1
        grid = cells(self.config)
        return GridCheck(len(grid), sum(c.key in done for c in grid), left)

    def check_same_settings(self) -> None:
        """Growing a grid (more methods, budgets, seeds...) into the same folder is fine;
        changing what a finished cell was computed with would mix two experiments."""
        saved = self.out / SETTINGS_FILE
        if not saved.is_file():
            return
        try:
            before = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, ValueError):  # not ours (binary, not UTF-8): rewritten
            return
        if not isinstance(before, dict):
            return
        now = yaml.safe_load(self.config.to_yaml())
        for key in settings_keys():
            if key in before and before[key] != now[key]:
                raise CondPretrainError(
                    f"--out {self.out} was run with another {key!r} ({before[key]!r}); "
                    "finished cells would not match: choose another --out")

    def run_step(self, step: Step) -> None:
        """One step by itself (a cluster job, which first checks that what the step needs
        is done): the calls of :meth:`run_cell`, each holding its run folder's lock."""
        cell = step.cell
        if step.kind == SELECT and step.subset_for:
            mixes.mix_select_step(self, step.subset_for, step.method, cell.seed, step.budgets)
        elif step.kind == SELECT:
            selections.select_step(self, cell.target, step.method, cell.seed, step.budgets)
        elif step.kind == PRETRAIN:  # a mix's subset: the one its parts' cells share
            subset = None if cell.method == ENTIRE_POOL else self.layout.subset_dir(
                cell.selected_for, cell.method, cell.budget, cell.seed) / "subset.csv"
            self.pretrained(cell, subset)
        elif step.kind == FINETUNE:
            init = None if cell.method == RANDOM_INIT else \
                self.layout.pretrain_dir(cell) / "backbone.pt"
            self.finetuned(cell, self.target_config(cell, init))
        else:  # collect: the local runner, reading what the other steps made
            Experiment(self.config, self.out, Steps.refusing()).run()

    def run_cell(self, cell: Cell) -> Row:
        row: dict[str, Any] = dict(zip(KEY_COLUMNS, cell.key, strict=True))
        subset: Path | None = None
        init: Path | None = None
        if cell.method not in BASELINES:
            subset = self._select_into(row, cell)
        if cell.method != RANDOM_INIT:
            init = self._pretrain_into(row, cell, subset)
        else:
            row.update(pretrain_seconds=0, pretrain_device_hours=0, pretrain_images=0,
                       pretrain_flops=0)
        self._finetune_into(row, cell, init)
        return {k: cell_text(v) for k, v in row.items()}

    def _select_into(self, row: dict[str, Any], cell: Cell) -> Path:
        sel = mixes.mix_selection(self, cell.subset_for, cell.method, cell.budget, cell.seed) \
            if cell.subset_for else self.selection(cell.target, cell.method, cell.budget,
                                                   cell.seed)
        row.update(selected=sel.selected, pool_size=sel.pool_size,
                   select_seconds=sel.seconds, select_device_hours=sel.device_hours,
                   select_shared=json.dumps(sel.shared, sort_keys=True),
                   select_dir=self.layout.relative(sel.dir))
        return sel.subset_csv

    def _pretrain_into(self, row: dict[str, Any], cell: Cell, subset: Path | None) -> Path:
        cost, run_dir = self.pretrained(cell, subset)
        row.update(pretrain_seconds=cost.get("wall_seconds", ""),
                   pretrain_device_hours=cost.get("device_hours", ""),
                   pretrain_images=cost.get("images", ""), pretrain_flops=cost.get("flops", ""),
                   pretrain_dir=self.layout.relative(run_dir))
        return run_dir / "backbone.pt"

    def _finetune_into(self, row: dict[str, Any], cell: Cell, init: Path | None) -> None:
        config = self.target_config(cell, init)
        result, cost, run_dir = self.finetuned(cell, config)
        row.update(task=cell.task, arch=config.arch, **target_scores(cell.task, result),
                   finetune_seconds=cost.get("wall_seconds", ""),
                   finetune_device_hours=cost.get("device_hours", ""),
                   finetune_dir=self.layout.relative(run_dir),
                   finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"))

    def selection(self, target: str, method: str, budget: float, seed: int) -> CellSelection:
        """Score once per (target, method, seed); every budget re-selects from the scores
        (see :mod:`.selections`)."""
        return selections.cell_selection(self, target, method, budget, seed)

    def pretrained(self, cell: Cell, subset: Path | None) -> tuple[dict[str, Any], Path]:
        run_dir = self.layout.pretrain_dir(cell)
        if not run_finished(run_dir, "backbone.pt"):
            self.steps.pretrain(self.config.pool, run_dir, self.pretrain_config(cell),
                                subset=str(subset) if subset else None,
                                resume=run_started(run_dir))
        return read_object(run_dir / "run.json"), run_dir

    def finetuned(self, cell: Cell, config: Any) -> tuple[dict[str, Any], dict[str, Any], Path]:
        """The target's training run (fine-tuning, or its downstream task): its result
        and cost, run (or continued) unless it finished."""
        run_dir = self.layout.finetune_dir(cell)
        if not run_finished(run_dir):
            if cell.task == FINETUNE_TASK:
                self.steps.finetune(self.config.target_path(cell.target), run_dir, config,
                                    resume=run_started(run_dir))
            else:
                self.steps.downstream(cell.task, self.config.target_vocs(cell.target), run_dir,
                                      config, resume=run_started(run_dir))
        return (read_object(run_dir / "result.json"), read_object(run_dir / "run.json"),
                run_dir)


def target_scores(task: str, result: dict[str, Any]) -> dict[str, Any]:
    """A finished run's scores as results.csv columns: top1, top5 and best_test_top1 of a
    fine-tuning; a downstream task's metrics in lower case (``ap50``, ``miou``), percent."""
    if task == FINETUNE_TASK:
        # best_top1: its name in result.json files written before
        return {"top1": result.get("top1", ""), "top5": result.get("top5", ""),
                "best_test_top1": result.get("best_test_top1", result.get("best_top1", ""))}
    cls = DOWNSTREAM_TASKS.get_class(task)
    scale = 1.0 if cls.metrics_percent else 100.0
    return {name.lower(): "" if not isinstance(result.get(name), (int, float))
            else float(result[name]) * scale for name in cls.metrics}


def run(experiment: ExperimentConfig | str | Path, out: str | Path,
        steps: Steps | None = None) -> ExperimentResult:
    """Run (or resume) the grid of an experiment file or config into ``out``."""
    if not isinstance(experiment, ExperimentConfig):
        experiment = load_experiment(experiment)
    return Experiment(experiment, out, steps).run()


__all__ = ["Steps", "Experiment", "ExperimentResult", "GridCheck", "run", "SETTINGS_FILE",
           "selection_seconds", "scoring_charge", "ScoringCharge"]
