"""A mixed target's selections in the grid (``targets: {cars+birds: {mix: {cars: 0.5,
birds: 0.5}}}``): one subset per (mix, method, budget, seed), and what its rows are
charged for it.

Nothing is scored for a mix: each part's scores are those of the part's own cells
(``Layout.scores_dir(part, method, seed)``, scored first if missing, with the part's own
``select`` options), and every budget's subset is merged from them by
:func:`condpretrain.multi_target.merge_selections`, as ``select --target ... --mix``
merges, into ``Layout.subset_dir(mix, method, budget, seed)``. Its record
(``selection.json``'s ``per_target``) is what each part was asked for and took.

A fusion ``fuse:A,B`` is merged the same way, from each part's fused scores.

Every row of the subset (one per part) is charged its parts' scorings and the merge;
``shared`` names them all, because the parts' own rows and the mix's other rows are
charged them too, so totals count each once.
"""

from __future__ import annotations

import dataclasses
import time

from condpretrain.config import SelectConfig, build_config
from condpretrain.dist import is_main_process
from condpretrain.errors import CondPretrainError
from condpretrain.experiment.grid import selection_done
from condpretrain.experiment.schema import section_values
from condpretrain.experiment.selections import (
    CellSelection,
    Grid,
    combined,
    read_object,
    scored,
    selection_seconds,
)
from condpretrain.scoring.cost import device_hours


def mix_parts(grid: Grid, mix: str) -> dict[str, float]:
    """The mix's parts and their shares; a one-line error for a target that is no mix."""
    parts = grid.config.mix_of(mix)
    if parts is None:  # the grid only asks for mixes; a caller's mistake, said in one line
        raise CondPretrainError(f"targets.{mix}: not a mix of targets")
    return parts


def merge_config(grid: Grid, method: str, budget: float, seed: int) -> SelectConfig:
    """What a mix's merge reads of the options: the file's ``select`` (a mix has none of
    its own; ``check_mix_policy`` made its policy ``top``), the cell's method, seed and
    budget. The method is set after checking: a fusion's merge reads fused scores, so it
    has no ``fuse_from`` of its own, which a fusion's config requires."""
    config = build_config(SelectConfig, grid.config.preset,
                          **{**section_values(grid.config, "select"), "seed": seed,
                             "fraction": budget})
    return dataclasses.replace(config, method=method)


def mix_selection(grid: Grid, mix: str, method: str, budget: float, seed: int
                  ) -> CellSelection:
    """The mix's subset of ``budget``, merged from its parts' scores (each scored first
    if missing), and its charge."""
    parts = mix_parts(grid, mix)
    charge = combined([scored(grid, part, method, seed) for part in parts])
    out = grid.layout.subset_dir(mix, method, budget, seed)
    measured = 0.0
    if not selection_done(out):
        started = time.perf_counter()
        grid.steps.merge(
            {part: grid.layout.scores_dir(part, method, seed) for part in parts},
            list(parts.values()), out, merge_config(grid, method, budget, seed),
            grid.config.pool, {part: grid.config.target_path(part) for part in parts},
            option=f"targets.{mix}")
        measured = time.perf_counter() - started
    merge_seconds = selection_seconds(out)
    merge_seconds = measured if merge_seconds is None else merge_seconds
    merge_hours = device_hours(merge_seconds, 1)  # a merge runs in one process
    info = read_object(out / "selection.json")
    return CellSelection(out, out / "subset.csv", info.get("selected", ""),
                         info.get("pool_size", ""), charge.seconds + merge_seconds,
                         charge.device_hours + merge_hours,
                         # the merge too: every part's row names this one subset
                         {**charge.shared, grid.layout.relative(out): merge_hours})


def mix_select_step(grid: Grid, mix: str, method: str, seed: int, budgets: list[float]
                    ) -> None:
    """A cluster's select step of a mix: every budget's merge (one process; the parts'
    scorings are steps of their own, which this one waits for)."""
    if is_main_process():
        for budget in budgets:
            mix_selection(grid, mix, method, budget, seed)


__all__ = ["mix_parts", "merge_config", "mix_selection", "mix_select_step"]
