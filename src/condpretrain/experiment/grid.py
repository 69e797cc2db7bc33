"""The grid: its cells, and where each cell's work lives so that cells can share it.

Work is shared where the result cannot differ, and the folder of an artefact is named
by exactly what it depends on, so sharing is a matter of two cells naming one folder:

* scoring runs once per (target, method, seed); every budget is a re-selection from
  the saved scores, never a second scoring; a fusion ``fuse:A,B`` fuses the scores
  of A and B from their folders (those of A's and B's own cells);
* the target-trained model is cached once per target (``OUT/cache/TARGET``), so
  clustering and (inverse) active learning reuse it;
* the entire-pool pre-training does not depend on the target: one run per
  (mode, resolution, seed) serves every target;
* a subset pre-training (target, method, budget, resolution, mode, seed) serves only
  its own cell (fine-tuned, or trained on by a downstream task: ``Cell.task``), except
  that of a mixed target (``{mix: {cars: 0.5, birds: 0.5}}``):
  its one subset, merged from its parts' saved scores, is pre-trained on once and
  fine-tuned on each part, a row per part (``subset_for`` names the mix).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from condpretrain.config.select import FEATURES_MARK, fused_methods, method_and_features
from condpretrain.experiment.results import ENTIRE_POOL, RANDOM_INIT, budget_key, budget_label
from condpretrain.experiment.schema import ExperimentConfig
from condpretrain.experiment.target_schema import FINETUNE_TASK

# What a method's features may show as in a folder name; anything else (a path) is hashed.
_SAFE_NAME = re.compile(r"[A-Za-z0-9._+=-]+")


@dataclass(frozen=True)
class Cell:
    """One row of the results table (before it has numbers)."""

    target: str
    mode: str
    resolution: int  # 0 for random init: nothing is pre-trained
    budget: float  # 0 random init, 1 entire pool, else the selected fraction
    method: str
    seed: int
    subset_for: str = ""  # the mixed target whose subset it pre-trains on, if any
    # The command that trains on the target: finetune, or a downstream task (detect...).
    # Not part of the row key: a target has one task.
    task: str = FINETUNE_TASK

    @property
    def key(self) -> tuple[str, ...]:
        """The cell's row key (see ``results.KEY_COLUMNS``)."""
        return (self.target, self.mode, str(self.resolution), budget_key(self.budget),
                self.method, str(self.seed), self.subset_for)

    @property
    def selected_for(self) -> str:
        """The target its subset was selected for: its own, or the mix it is part of."""
        return self.subset_for or self.target

    @property
    def label(self) -> str:
        if self.method == RANDOM_INIT:
            return f"{self.target} {self.mode} random-init seed {self.seed}"
        shared = f" (subset for {self.subset_for})" if self.subset_for else ""
        return (f"{self.target} {self.mode} {self.resolution}px {budget_label(self.budget)} "
                f"{self.method}{shared} seed {self.seed}")


def cells(config: ExperimentConfig) -> list[Cell]:
    """Every row of the results table, in the order they run (baselines first)."""
    grid: list[Cell] = []
    for target in config.targets:
        for mode in config.modes:
            for seed in config.seeds:
                grid += _cells_of(config, target, mode, seed)
    return grid


def _mixed_cells(config: ExperimentConfig, mix: str, mode: str, seed: int) -> list[Cell]:
    """A mix's cells: no baselines (its parts have theirs), a row per part of each
    subset; the parts of one subset next to each other (one pre-training serves them)."""
    parts = config.mix_of(mix) or {}
    return [Cell(part, mode, res, budget, method, seed, subset_for=mix,
                 task=config.target_task(part))
            for res in config.resolutions for budget in sorted(config.budgets)
            for method in config.methods for part in parts]


def mixes_of(config: ExperimentConfig) -> dict[str, list[str]]:
    """Each mixed target of the file with its parts (file order)."""
    return {name: list(parts) for name in config.targets
            if (parts := config.mix_of(name)) is not None}


def _cells_of(config: ExperimentConfig, target: str, mode: str, seed: int) -> list[Cell]:
    if config.mix_of(target) is not None:
        return _mixed_cells(config, target, mode, seed)
    task = config.target_task(target)
    found = []
    if RANDOM_INIT in config.baselines:
        found.append(Cell(target, mode, 0, 0.0, RANDOM_INIT, seed, task=task))
    for res in config.resolutions:
        if ENTIRE_POOL in config.baselines:
            found.append(Cell(target, mode, res, 1.0, ENTIRE_POOL, seed, task=task))
        for budget in sorted(config.budgets):
            for method in config.methods:
                found.append(Cell(target, mode, res, budget, method, seed, task=task))
    return found


def method_folder(method: str) -> str:
    """A method in a folder name: a fusion ``fuse:a,b`` is ``fuse-a+b``, because ':' and
    ',' are not safe in paths (',' separates the folders of ``fuse_from``)."""
    parts = fused_methods(method)
    return "fuse-" + "+".join(map(_part_folder, parts)) if parts else _part_folder(method)


def _part_folder(method: str) -> str:
    """``knn@classic:layout+gradients`` -> ``knn@classic-layout+gradients``; features that
    hold a path (``checkpoint:/x/y.pt``) are named by a hash of their text instead."""
    name, features = method_and_features(method)
    if features is None:
        return name
    readable = features.replace(":", "-")
    if not _SAFE_NAME.fullmatch(readable):
        readable = "h" + hashlib.sha256(features.encode()).hexdigest()[:12]
    return f"{name}{FEATURES_MARK}{readable}"


def _percent_key(budget: float) -> str:
    """A budget in a folder name: 0.06 -> '6' (as in ``b6``)."""
    return budget_key(budget * 100)


@dataclass(frozen=True)
class Layout:
    """Folders of an experiment's artefacts under ``out``: the path says which cells
    may share one."""

    out: Path

    def cache_dir(self, target: str) -> Path:
        return self.out / "cache" / target

    def selections_dir(self, target: str, method: str, seed: int) -> Path:
        """What (target, method, seed) selects: its scores and a folder per budget."""
        return self.out / "select" / target / method_folder(method) / f"seed{seed}"

    def scores_dir(self, target: str, method: str, seed: int) -> Path:
        return self.selections_dir(target, method, seed) / "scores"

    def subset_dir(self, target: str, method: str, budget: float, seed: int) -> Path:
        return self.selections_dir(target, method, seed) / f"b{_percent_key(budget)}"

    def pretrain_dir(self, cell: Cell) -> Path:
        group = self.out / "pretrain" / f"{cell.mode}-{cell.resolution}"
        if cell.method == ENTIRE_POOL:
            return group / ENTIRE_POOL / f"seed{cell.seed}"
        # a mix's subset: one run that its parts' cells share
        return group / cell.selected_for / \
            f"{method_folder(cell.method)}-b{_percent_key(cell.budget)}" / f"seed{cell.seed}"

    def finetune_dir(self, cell: Cell) -> Path:
        """Where the target's training runs: ``OUT/finetune/...`` for a classification
        target, ``OUT/detect/...`` or ``OUT/segment/...`` for a downstream one."""
        where = self.out / cell.task / cell.target
        if cell.method == RANDOM_INIT:
            return where / cell.mode / RANDOM_INIT / f"seed{cell.seed}"
        name = cell.method if cell.method == ENTIRE_POOL else \
            f"{method_folder(cell.method)}-b{_percent_key(cell.budget)}"
        group = where / f"{cell.mode}-{cell.resolution}"
        if cell.subset_for:  # beside the target's own subset of that method and budget
            group = group / f"subset-for-{cell.subset_for}"
        return group / name / f"seed{cell.seed}"

    def relative(self, path: Path) -> str:
        """How the results table names an artefact: relative to ``out`` where it can."""
        try:
            return str(path.relative_to(self.out))
        except ValueError:
            return str(path)


# What the files in an artefact's folder say about it. ``result.json`` is written once,
# when a run is done; a killed run leaves only its cost file or its checkpoint.


def selection_done(sel_dir: Path) -> bool:
    return (sel_dir / "selection.json").is_file() and (sel_dir / "subset.csv").is_file()


def run_started(run_dir: Path) -> bool:
    """A killed run left its cost or checkpoint file: continue it (``resume=True``)
    rather than start over; the training API refuses to overwrite without it."""
    return (run_dir / "run.json").is_file() or (run_dir / "checkpoint.pt").is_file()


def run_finished(run_dir: Path, *needed: str) -> bool:
    return all((run_dir / name).is_file() for name in ("result.json", "run.json", *needed))


__all__ = ["Cell", "cells", "mixes_of", "Layout", "method_folder", "selection_done", "run_started",
           "run_finished"]
