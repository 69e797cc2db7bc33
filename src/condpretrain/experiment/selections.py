"""A grid's selections: each (target, method, seed) scored once, every budget re-selected
from the saved scores, and what each row is charged for it.

A fusion ``fuse:A,B`` is scored like any method, from the grid's own folders: its parts
are scored first (once, in ``Layout.scores_dir(target, A, seed)``, the folder A's own
cells read, if the grid has any), then fused from those folders without re-scoring.

Every budget is charged the whole scoring, cached models included (the paper's cost
column); ``shared`` names the parts of that charge which other rows are charged too (a
scoring, each cached model, a fusion's parts), so that totals count each once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from condpretrain import atomic
from condpretrain.config import SelectConfig
from condpretrain.config.select import fused_methods
from condpretrain.dist import is_main_process
from condpretrain.errors import CondPretrainError
from condpretrain.experiment.grid import Layout, selection_done
from condpretrain.experiment.schema import ExperimentConfig
from condpretrain.scoring.cost import device_hours


class Grid(Protocol):
    """What the selections need of the runner (``runner.Experiment``)."""

    config: ExperimentConfig
    layout: Layout
    steps: Any  # runner.Steps: select and reselect are called

    def select_config(self, target: str, method: str, seed: int) -> SelectConfig: ...


@dataclass
class ScoringCharge:
    """What a (target, method, seed)'s scoring charges each of its budgets."""

    seconds: float
    device_hours: float
    # the parts of it other rows share, by key: the scoring itself (every budget), each
    # cached model it used (other methods), a fusion's parts; a total counts each once
    shared: dict[str, float]
    shared_seconds: dict[str, float] = field(default_factory=dict)  # the same, in seconds


@dataclass
class CellSelection:
    """A cell's subset and what its row records of the selection."""

    dir: Path
    subset_csv: Path
    selected: int | str
    pool_size: int | str
    seconds: float
    device_hours: float
    shared: dict[str, float]


# --------------------------------------------------------------------------- the work


def fuse_from(grid: Grid, target: str, method: str, seed: int) -> str | None:
    """A fusion's ``fuse_from``: its parts' scores folders in the grid; None otherwise."""
    parts = fused_methods(method)
    if not parts:
        return None
    folders = [str(grid.layout.scores_dir(target, part, seed)) for part in parts]
    if any("," in folder for folder in folders):
        raise CondPretrainError(f"--out {grid.layout.out}: a fusion lists its parts' folders "
                                "separated by ','; choose an --out without ','")
    return ",".join(folders)


def scored(grid: Grid, target: str, method: str, seed: int) -> ScoringCharge:
    """The scores of (target, method, seed) in their folder, scored if missing (a
    fusion's parts first), and their charge."""
    parts = [scored(grid, target, part, seed) for part in fused_methods(method) or []]
    scores = grid.layout.scores_dir(target, method, seed)
    key = grid.layout.relative(scores)
    charge = scoring_charge(scores, key) if selection_done(scores) else None
    if charge is None:
        started = time.perf_counter()
        result = grid.steps.select(grid.config.pool, grid.config.target_path(target), scores,
                                   grid.select_config(target, method, seed))
        measured = _seconds(result, started)
        charge = scoring_charge(scores, key, measured) or \
            ScoringCharge(measured, device_hours(measured, 1), {}, {})
    return combined([charge, *parts]) if parts else charge


def cell_selection(grid: Grid, target: str, method: str, budget: float, seed: int
                   ) -> CellSelection:
    """A budget's subset, re-selected from the saved scores (scored first if missing)."""
    charge = scored(grid, target, method, seed)
    scores = grid.layout.scores_dir(target, method, seed)
    out = grid.layout.subset_dir(target, method, budget, seed)
    if not selection_done(out):
        started = time.perf_counter()
        result = grid.steps.reselect(scores, out, fraction=budget)
        reselect_seconds = _seconds(result, started)
    else:
        # A re-selection's timings repeat the scoring's; only its own stage is new.
        timings = read_object(out / "selection.json").get("timings", {})
        reselect_seconds = float(timings.get("reselect", 0.0))
    info = read_object(out / "selection.json")
    return CellSelection(out, out / "subset.csv",
                         info.get("selected", _count_rows(out / "subset.csv")),
                         info.get("pool_size", ""), charge.seconds + reselect_seconds,
                         # a re-selection runs in one process
                         charge.device_hours + device_hours(reselect_seconds, 1),
                         charge.shared)


def select_step(grid: Grid, target: str, method: str, seed: int, budgets: list[float]) -> None:
    """A cluster's select step: the scoring (every process of a distributed job scores;
    a fusion scores nothing, so one process fuses), then each budget (one process)."""
    scores = grid.layout.scores_dir(target, method, seed)
    if not selection_done(scores) and (not fused_methods(method) or is_main_process()):
        grid.steps.select(grid.config.pool, grid.config.target_path(target), scores,
                          grid.select_config(target, method, seed))
    if is_main_process():
        for budget in budgets:
            cell_selection(grid, target, method, budget, seed)


# --------------------------------------------------------------------------- charges


def scoring_charge(sel_dir: Path, key: str, measured: float | None = None
                   ) -> ScoringCharge | None:
    """A saved scoring's charge, from its ``selection.json``: its ``cost`` block, else (a
    selection written before costs were recorded) its timings x processes.

    A fusion's record charges its parts too; here it is its own time only, because the
    grid charges the parts from their own folders (:func:`combined`), where their
    shared work has names."""
    info = read_object(sel_dir / "selection.json")
    cost = info.get("cost")
    if isinstance(cost, dict) and "fused" in cost and _is_number(cost.get("own_seconds")):
        own = float(cost["own_seconds"])
        hours = float(cost.get("own_device_hours", device_hours(own, 1)))
        return ScoringCharge(own, hours, {key: hours}, {key: own})
    if isinstance(cost, dict) and _is_number(cost.get("seconds")):
        models = [m for m in cost.get("shared", [])
                  if isinstance(m, dict) and _is_number(m.get("device_hours"))]
        shared = {shared_key(m): float(m["device_hours"]) for m in models}
        seconds = {shared_key(m): float(m["seconds"]) for m in models
                   if _is_number(m.get("seconds"))}
        own_seconds = cost.get("own_seconds")
        return ScoringCharge(
            float(cost["seconds"]), float(cost["device_hours"]),
            {key: float(cost.get("own_device_hours", 0.0)), **shared},
            {key: float(own_seconds) if _is_number(own_seconds) else 0.0, **seconds})
    seconds = selection_seconds(sel_dir)
    seconds = measured if seconds is None else seconds
    if seconds is None:
        return None
    hours = device_hours(seconds, int(info.get("processes", 1)))
    return ScoringCharge(seconds, hours, {key: hours}, {key: seconds})


def shared_key(model: dict[str, Any]) -> str:
    """How the rows name a cached model they share: its file's name under its folder
    (each target's cache is its own), so that two targets whose models have one recipe
    and one set of images, each trained in its own folder, are counted twice."""
    path = model.get("path")
    if isinstance(path, str) and path:
        return f"{Path(path).parent.name}/{model['key']}"
    return str(model["key"])


def combined(charges: list[ScoringCharge]) -> ScoringCharge:
    """Several scorings charged as one (a fusion and its parts), each piece of shared
    work once: two fused methods may use one cached model, which ``select`` alone
    counts twice (an upper bound)."""
    hours = sum(c.device_hours - sum(c.shared.values()) for c in charges)
    seconds = sum(c.seconds - sum(c.shared_seconds.values()) for c in charges)
    shared: dict[str, float] = {}
    shared_seconds: dict[str, float] = {}
    for charge in charges:
        for work, value in charge.shared.items():
            shared.setdefault(work, value)
        for work, value in charge.shared_seconds.items():
            shared_seconds.setdefault(work, value)
    return ScoringCharge(max(seconds, 0.0) + sum(shared_seconds.values()),
                         max(hours, 0.0) + sum(shared.values()), shared, shared_seconds)


def selection_seconds(sel_dir: Path) -> float | None:
    """Seconds a saved selection took, from its ``selection.json`` timings."""
    timings = read_object(sel_dir / "selection.json").get("timings")
    if not isinstance(timings, dict):
        return None
    if isinstance(timings.get("total"), (int, float)):
        return float(timings["total"])
    return float(sum(_walk_numbers(timings)))


def _walk_numbers(obj: Any) -> Iterator[float]:
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield float(obj)
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _walk_numbers(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_object(path: Path) -> dict[str, Any]:
    """A run's JSON file, or nothing: a missing figure leaves its column empty."""
    data = atomic.read_json(path, default=None)
    return data if isinstance(data, dict) else {}


def _seconds(result: Any, started: float) -> float:
    seconds = getattr(result, "seconds", None)
    return float(seconds) if isinstance(seconds, (int, float)) else time.perf_counter() - started


def _count_rows(path: Path) -> int | str:
    try:
        with open(path, encoding="utf-8") as handle:
            return max(sum(1 for _ in handle) - 1, 0)
    except OSError:
        return ""


__all__ = ["Grid", "ScoringCharge", "CellSelection", "fuse_from", "scored", "cell_selection",
           "select_step", "scoring_charge", "combined", "selection_seconds", "read_object"]
