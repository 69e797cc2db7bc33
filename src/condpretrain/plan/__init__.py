"""Plan by compute budget: calibrate throughput on this machine, predict the
device-hours of a grid's selection, pre-training and fine-tuning, per cell, and which
cells fit in the hours available.

    calibrate.py, calibrate_select.py,  short real runs of the tool's own code, timed
    calibrate_task.py                   (a detection or segmentation target's: the last)
    clock.py                            optimizer-step times -> a run's rate
    rates.py                            the rates, and the loader's epoch arithmetic
    predict.py                          rates x what each run will do -> device-hours
    make.py                             the command: grid, calibration, prediction, plan.json
    record.py                           plan.json's name and format (the report reads it)

The calibration modules load the training stack only when a plan is made, so the
report can read ``plan.json`` (:mod:`.record`) without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from condpretrain.config import PlanConfig
    from condpretrain.plan.make import PlanResult


def plan(sources: list[str] | str, target: str, out: str | Path,
         config: PlanConfig | None = None, preset: str = "paper") -> PlanResult:
    """Calibrate, predict the grid's device-hours and write ``OUT/plan.json``."""
    from condpretrain.plan.make import make_plan

    return make_plan(sources, target, out, config, preset)


def plan_file(experiment: str | Path, out: str | Path, config: PlanConfig | None = None
              ) -> PlanResult:
    """The same for an experiment file, as ``condpretrain run`` would run it: every
    target, the file's grid, sections and preset (``config``: the calibration's options,
    by default the file's preset's; its grid options are not read)."""
    from condpretrain.config import PlanConfig as Options
    from condpretrain.config import build_config
    from condpretrain.experiment.schema import load_experiment
    from condpretrain.plan.make import plan_experiment

    grid = load_experiment(experiment)
    config = config or build_config(Options, grid.preset)
    return plan_experiment(grid, out, config, {"experiment": str(experiment)})


__all__ = ["plan", "plan_file"]
