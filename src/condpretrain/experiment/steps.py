"""The grid as steps for a cluster: which jobs, what each waits for, what each asks for.

A step is the work of one artefact folder (see :mod:`.grid`), so a folder that several
cells share is one step, run once:

* ``select`` - the scoring of one (target, method, seed) and the re-selection of each
  budget from its scores. Re-selecting takes seconds: one job per budget would only add
  queue waits. The scorings of one target run one after another, in the order the local
  runner runs them, because they share ``OUT/cache/TARGET`` (the target-trained model,
  the pool's features): scoring two methods at once would train those twice. A fusion's
  step waits for its parts' scorings (a part the grid has no cells of is a step too,
  with no budget of its own) and, reading no cache, is outside that chain. So is a
  mixed target's (``Layout.selections_dir(MIX, method, seed)``): it merges every
  budget's subset from its parts' scores, after their scorings;
* ``pretrain`` - one run folder, after the selection it reads; the entire-pool run
  serves every target and waits for nothing, a mix's subset run each of its parts;
* ``finetune`` - one cell, after the pre-training it starts from;
* ``collect`` - ``results.csv``, after every fine-tuning, written by the local runner
  from the finished artefacts (see ``Experiment.run_step``).

Everything here is decided from the experiment file and the files already in ``OUT``;
nothing is run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from condpretrain.config.select import fused_methods
from condpretrain.experiment.grid import (
    Cell,
    Layout,
    cells,
    mixes_of,
    run_finished,
    selection_done,
)
from condpretrain.experiment.results import (
    BASELINES,
    RANDOM_INIT,
    RESULTS_FILE,
    read_results,
    row_key,
)
from condpretrain.experiment.schema import ExperimentConfig
from condpretrain.experiment.slurm_schema import SlurmConfig, StepResources

SELECT, PRETRAIN, FINETUNE, COLLECT = "select", "pretrain", "finetune", "collect"
# Collecting reads files and writes one table: no GPU, and never for long.
COLLECT_MINUTES = 60


@dataclass(frozen=True)
class Step:
    """One job's work: ``folder`` (relative to OUT) is what it makes, ``cells`` the rows
    it serves (in grid order; a scoring also serves the fusions and mixes of it),
    ``needs`` the ids of the steps it waits for, ``method`` what a select step scores,
    ``subset_for`` the mix a select step merges for instead (it scores nothing)."""

    kind: str
    folder: str
    cells: tuple[Cell, ...]
    needs: tuple[str, ...] = ()
    method: str = ""
    subset_for: str = ""

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.folder}" if self.folder else self.kind

    @property
    def cell(self) -> Cell:
        """The first cell it serves: every cell of a step names the same folder."""
        return self.cells[0]

    @property
    def budgets(self) -> list[float]:
        """The budgets a select step re-selects (or merges): those of its own method's
        cells, a mix's for a mix's step, a target's own otherwise."""
        return sorted({cell.budget for cell in self.cells if cell.method == self.method
                       and cell.subset_for == self.subset_for})


@dataclass
class _Draft:
    kind: str
    folder: str
    cells: list[Cell] = dataclasses.field(default_factory=list)
    needs: list[str] = dataclasses.field(default_factory=list)
    method: str = ""
    subset_for: str = ""


def step_graph(layout: Layout, grid: Sequence[Cell],
               mixes: Mapping[str, Sequence[str]] | None = None) -> dict[str, Step]:
    """The steps that ``grid``'s cells need, by id; a step comes after those it needs.
    ``mixes``: each mixed target's parts (``grid.mixes_of``); by default those its
    cells in ``grid`` fine-tune, which is all of them when ``grid`` is every cell."""
    drafts: dict[str, _Draft] = {}
    scorings: dict[str, list[str]] = {}  # target -> its select steps, in grid order
    if mixes is None:
        mixes = _parts_in(grid)

    def add(kind: str, folder: Path, cell: Cell, *needs: str, method: str = "",
            subset_for: str = "") -> str:
        relative = layout.relative(folder)
        key = f"{kind}:{relative}"
        if key not in drafts:
            drafts[key] = _Draft(kind, relative, method=method, subset_for=subset_for)
            # a fusion or a mix reads no cache
            if kind == SELECT and not fused_methods(method) and not subset_for:
                scorings.setdefault(cell.target, []).append(key)
        if cell not in drafts[key].cells:  # a mix's merge names each part's cell for each
            drafts[key].cells.append(cell)
        drafts[key].needs += [n for n in needs if n not in drafts[key].needs]
        return key

    def scoring(cell: Cell, method: str) -> str:
        """The select step of ``method`` for ``cell``'s target and seed; a fusion's
        after its parts'."""
        parts = [scoring(cell, part) for part in fused_methods(method) or []]
        return add(SELECT, layout.scores_dir(cell.target, method, cell.seed), cell, *parts,
                   method=method)

    def merging(cell: Cell) -> str:
        """The select step of the mix whose subset ``cell`` pre-trains on (every budget
        of its method and seed), after each part's scoring of that method."""
        mix = cell.subset_for
        parts = [scoring(dataclasses.replace(cell, target=part), cell.method)
                 for part in mixes.get(mix, [cell.target])]
        return add(SELECT, layout.selections_dir(mix, cell.method, cell.seed), cell, *parts,
                   method=cell.method, subset_for=mix)

    finetunes = []
    for cell in grid:
        needs: tuple[str, ...] = ()
        if cell.method not in BASELINES:
            needs = (merging(cell) if cell.subset_for else scoring(cell, cell.method),)
        if cell.method != RANDOM_INIT:
            needs = (add(PRETRAIN, layout.pretrain_dir(cell), cell, *needs),)
        finetunes.append(add(FINETUNE, layout.finetune_dir(cell), cell, *needs))
    for chain in scorings.values():  # one target's scorings, one after another
        for before, after in zip(chain, chain[1:], strict=False):
            drafts[after].needs.append(before)
    if grid:
        drafts[COLLECT] = _Draft(COLLECT, "", list(grid), finetunes)
    order = {SELECT: 0, PRETRAIN: 1, FINETUNE: 2, COLLECT: 3}
    ranked = sorted(drafts.items(), key=lambda item: order[item[1].kind])  # stable
    return {key: Step(d.kind, d.folder, tuple(d.cells), tuple(d.needs), d.method,
                      d.subset_for) for key, d in ranked}


def _parts_in(grid: Sequence[Cell]) -> dict[str, list[str]]:
    """Each mix's parts as its cells in ``grid`` name them (file order)."""
    parts: dict[str, list[str]] = {}
    for cell in grid:
        if cell.subset_for and cell.target not in parts.setdefault(cell.subset_for, []):
            parts[cell.subset_for].append(cell.target)
    return parts


def finished(step: Step, layout: Layout, done: set[tuple[str, ...]]) -> bool:
    """Whether ``step``'s work is there: every row it serves is in ``results.csv``
    (done), or its folder holds a finished artefact (the same tests as the runner's)."""
    if all(cell.key in done for cell in step.cells):
        return True
    folder = layout.out / step.folder
    if step.kind == SELECT and step.subset_for:  # a mix's: its merged subsets
        return all(selection_done(layout.subset_dir(step.subset_for, step.method, budget,
                                                    step.cell.seed))
                   for budget in step.budgets)
    if step.kind == SELECT:
        cell = step.cell
        return selection_done(folder) and all(
            selection_done(layout.subset_dir(cell.target, step.method, budget, cell.seed))
            for budget in step.budgets)
    if step.kind == PRETRAIN:
        return run_finished(folder, "backbone.pt")
    if step.kind == FINETUNE:
        return run_finished(folder)
    return False  # collect: only the rows say it is done


def done_keys(out: Path) -> set[tuple[str, ...]]:
    """The keys of the rows already in ``OUT/results.csv``."""
    return {row_key(row) for row in read_results(out / RESULTS_FILE)}


def pending(config: ExperimentConfig, layout: Layout) -> dict[str, Step]:
    """The steps still to run, as the local runner would: cells whose row is missing,
    less the artefacts already finished; a need on finished work is dropped."""
    done = done_keys(layout.out)
    todo = [cell for cell in cells(config) if cell.key not in done]
    graph = step_graph(layout, todo, mixes_of(config))
    left = {key: step for key, step in graph.items() if not finished(step, layout, done)}
    return {key: dataclasses.replace(step, needs=tuple(n for n in step.needs if n in left))
            for key, step in left.items()}


def waves(steps: dict[str, Step]) -> list[list[Step]]:
    """``steps`` in rounds, each needing only steps of earlier rounds (for executors
    without job dependencies, which run a round and wait for it)."""
    placed: dict[str, int] = {}
    rounds: list[list[Step]] = []
    for key, step in steps.items():  # needs come first (see step_graph)
        level = 1 + max((placed[n] for n in step.needs if n in placed), default=-1)
        placed[key] = level
        if level == len(rounds):
            rounds.append([])
        rounds[level].append(step)
    return rounds


def resources(step: Step, slurm: SlurmConfig) -> StepResources:
    """What ``step`` asks for: its kind's ``slurm`` resources (a target's training: its
    task's, ``slurm.detect`` for a detection target); collect borrows the selection's
    CPUs and memory, without a GPU."""
    if step.kind == COLLECT:
        select = slurm.resources(SELECT)
        return dataclasses.replace(select, gpus=0, time=min(select.time, COLLECT_MINUTES))
    if step.kind == FINETUNE:  # a downstream target's training asks as its task
        return slurm.resources(step.cell.task)
    return slurm.resources(step.kind)


__all__ = ["SELECT", "PRETRAIN", "FINETUNE", "COLLECT", "Step", "step_graph", "finished",
           "done_keys", "pending", "waves", "resources"]
