"""``condpretrain plan``: predict a grid's device-hours from a short calibration."""

from __future__ import annotations

import argparse

from condpretrain.cli.flags import (
    add_config_flags,
    add_preset_flags,
    config_from_args,
    flag_values,
)
from condpretrain.config import PlanConfig, build_config
from condpretrain.config.plan import FINETUNE_TASK
from condpretrain.errors import CondPretrainError
from condpretrain.experiment.schema import load_experiment
from condpretrain.plan import plan, plan_file
from condpretrain.plan.make import FILE_KEYS, PlanResult, fits_summary
from condpretrain.plan.predict import STAGES
from condpretrain.report.tables import hours_text

STAGE_TITLES = {"select": "select", "pretrain": "pre-train", "finetune": "fine-tune"}


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "plan", help="predict the device-hours of a grid and which cells fit in --hours",
        description="Measure throughput with short real runs on this machine (scoring, "
                    "pre-training per resolution and mode, fine-tuning or the target's "
                    "--task), then predict, per cell of the grid, the device-hours of "
                    "selection, pre-training and fine-tuning (or detection, segmentation) "
                    "that `condpretrain run` will take, and which cells it finishes within "
                    "--hours. Writes OUT/plan.json; run the experiment into "
                    "the same OUT and its report compares predicted with measured cost.")
    parser.add_argument("experiment", nargs="?", metavar="EXPERIMENT.yaml",
                        help="an experiment file: plan it as `condpretrain run` runs it "
                             "(every target, its grid, sections and preset); without one, "
                             "the grid is --source, --target and the grid options")
    parser.add_argument("--source", action="append", metavar="[NAME=]POOL",
                        help="an ImageFolder, flat image folder or path,label CSV; repeat to union")
    parser.add_argument("--target", metavar="[NAME=]TARGET",
                        help="the target as the experiment file names it: NAME=PATH, or a "
                             "folder (named after it)")
    parser.add_argument("--out", default="plan", metavar="DIR",
                        help="where plan.json goes (default: plan); the experiment's --out "
                             "to compare after the run")
    add_preset_flags(parser)
    add_config_flags(parser, PlanConfig)
    parser.set_defaults(handler=run_plan, preset=None)  # an experiment file has its own


def run_plan(args: argparse.Namespace) -> int:
    if args.experiment:
        return _plan_file(args)
    args.preset = args.preset or "paper"
    config = config_from_args(args, PlanConfig)  # a bad option fails before any listing
    if not args.source:
        raise CondPretrainError("--source: give at least one image pool")
    if not args.target:
        raise CondPretrainError("--target: give the target dataset")
    print_plan(plan(args.source, args.target, args.out, config, args.preset))
    return 0


def _plan_file(args: argparse.Namespace) -> int:
    """``plan EXPERIMENT.yaml``: the file's grid; the flags' calibration options."""
    given = flag_values(args, PlanConfig)  # a bad option fails before the file is read
    grid_flags = [name for name in FILE_KEYS if name in given]
    if args.source or args.target or grid_flags:
        flag = f"--{grid_flags[0]}" if grid_flags else ("--source" if args.source
                                                        else "--target")
        raise CondPretrainError(f"{flag}: {args.experiment} sets the grid (pool, targets, "
                                "methods...): change it there")
    grid = load_experiment(args.experiment)
    if args.preset and args.preset != grid.preset:
        raise CondPretrainError(f"--preset: {args.experiment} runs the {grid.preset} preset; "
                                "a plan calibrates it")
    config = build_config(PlanConfig, grid.preset, args.config, **given)
    defaults = build_config(PlanConfig, grid.preset)
    grid_keys = [name for name in FILE_KEYS
                 if getattr(config, name) != getattr(defaults, name)]
    if grid_keys:  # from --config: the file's grid would be silently another
        raise CondPretrainError(f"--config: {args.config} sets {grid_keys[0]}, which "
                                f"{args.experiment} sets: change it there")
    print_plan(plan_file(args.experiment, args.out, config))
    return 0


def stage_titles(result: PlanResult) -> dict[str, str]:
    """The stages' column titles; the last is the training on the target: fine-tuning, or
    its downstream task (results.csv charges either to its finetune_* columns)."""
    tasks = dict.fromkeys(STAGE_TITLES["finetune"] if c.plan.cell.task == FINETUNE_TASK
                          else c.plan.cell.task for c in result.cells)
    return {**STAGE_TITLES, "finetune": "/".join(tasks) or STAGE_TITLES["finetune"]}


def print_plan(result: PlanResult) -> None:
    """The cells in the order `run` runs them, their predicted device-hours, the totals."""
    titles = stage_titles(result)
    header = ["cell", *(titles[s] for s in STAGES), "cell total", "cumulative"]
    if result.hours is not None:
        header.append(f"fits {result.hours:g} h")
    rows = []
    for cost in result.cells:
        row = [cost.plan.cell.label, *(hours_text(cost.charged[s]) for s in STAGES),
               hours_text(sum(cost.charged.values())), hours_text(cost.cumulative)]
        if cost.fits is not None:
            row.append("yes" if cost.fits else "no")
        rows.append(row)
    print(f"predicted device-hours on {result.device} (1 process), calibrated in "
          f"{result.calibration_seconds:.0f} s; cells in the order `condpretrain run` runs "
          "them, each charged all it needs (as results.csv charges it)")
    _print_table(header, rows)
    print("\ntotal, shared work counted once: " + ", ".join(
        f"{titles[s]} {hours_text(result.once[s])}" for s in STAGES)
        + f", all {hours_text(result.once['total'])} device-hours "
          f"(rows' charges summed: {hours_text(result.charged['total'])})")
    fits = fits_summary(result.cells)
    if fits is not None:
        print(f"{fits['cells']} of {fits['of']} cells fit in {result.hours:g} "
              f"device-hours (they take {hours_text(fits['device_hours'])})")
    print(f"plan: {result.path}")


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for i, row in enumerate([header, *rows]):
        print("  ".join(text.ljust(w) if j == 0 else text.rjust(w)
                        for j, (text, w) in enumerate(zip(row, widths, strict=True))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
