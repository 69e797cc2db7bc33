"""``run``, ``report`` and ``demo``: the experiment grid, its report, the embedded demo.

The only printing of the experiment group happens here: the Table-2 tables after a
report or a demo, and where the files went.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import TYPE_CHECKING

from condpretrain.cli.flags import add_config_flags, flag_values
from condpretrain.demo import DemoConfig, demo
from condpretrain.experiment import Experiment, load_experiment
from condpretrain.experiment.launch import Submission, launch
from condpretrain.registry import LAUNCHERS
from condpretrain.report import report

if TYPE_CHECKING:  # the report's module loads the plotting libraries: only when it runs
    from condpretrain.report.build import ReportResult


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "run", help="run an experiment grid (targets x methods x budgets x resolutions x modes)",
        description="Run select -> pretrain -> finetune (detect or segment for a target "
                    "whose task it is) for every cell and seed of an "
                    "experiment file; resumable: finished cells are skipped.")
    parser.add_argument("experiment", metavar="EXPERIMENT.yaml", help="the experiment file")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (results.csv)")
    parser.add_argument("--no-report", action="store_true", help="do not write the report after")
    parser.add_argument("--check", action="store_true",
                        help="check the file, the folder's earlier settings and the targets' "
                             "data (labels, VOC folders), print the work left, run nothing")
    parser.add_argument("--launcher", default="local", choices=LAUNCHERS.names(),
                        help="local: this process runs every cell (default); slurm: every "
                             "step a Slurm job, resources from the file's slurm section")
    parser.set_defaults(handler=_run)

    parser = commands.add_parser(
        "report", help="write report.md and report.html of an experiment folder",
        description="Tables in the layout of the paper's Table 2, accuracy against cost, "
                    "what each method picked.")
    parser.add_argument("out", metavar="DIR", help="an experiment output folder")
    parser.set_defaults(handler=_report)

    parser = commands.add_parser(
        "demo", help="run the embedded demo experiment (no data needed, a few minutes on CPU)",
        description="Target: scikit-learn's handwritten digits; pool: four sources made "
                    "from installed packages (scanned-looking typeset digits, other "
                    "characters, photo crops, shapes). Random, domain classifier and both "
                    "clustering methods (--full: all) plus both baselines, two budgets, two "
                    "resolutions, three seeds, small preset; prints the findings and the "
                    "table and writes the report.")
    parser.add_argument("--out", default="condpretrain-demo", metavar="DIR",
                        help="output folder (default: ./condpretrain-demo)")
    add_config_flags(parser, DemoConfig, yaml_keys=False)
    parser.set_defaults(handler=_demo)


def _run(args: argparse.Namespace) -> int:
    if args.check:
        return _check(args)
    result = launch(args.experiment, args.out, args.launcher)
    if isinstance(result, Submission):
        if not result.complete:  # the jobs write results.csv; the report comes after
            print(f"{len(result.jobs)} job(s) submitted, ids in {result.jobs_file}; the "
                  f"last writes {result.results_csv}; then: condpretrain report {args.out}")
            return 0
        print(f"{len(result.jobs)} job(s) run -> {result.results_csv}")
    else:
        print(f"{result.ran} cell(s) run, {result.skipped} already done -> {result.results_csv}")
    if not args.no_report:
        _print_report(report(args.out))
    return 0


def _check(args: argparse.Namespace) -> int:
    found = Experiment(load_experiment(args.experiment), args.out).check()
    steps = ", ".join(f"{count} {kind}" for kind, count in found.steps.items()) or "none"
    print(f"{args.experiment}: checked; {found.cells} cell(s), {found.done} already done in "
          f"{args.out}; steps to run: {steps}")
    return 0


def _report(args: argparse.Namespace) -> int:
    _print_report(report(args.out))
    return 0


def _demo(args: argparse.Namespace) -> int:
    config = dataclasses.replace(DemoConfig(), **flag_values(args, DemoConfig))
    started = time.perf_counter()
    result = demo(args.out, config)
    _print_report(result.report)
    print(f"demo finished in {(time.perf_counter() - started) / 60:.1f} min")
    return 0


def _print_report(written: ReportResult) -> None:
    print(written.table_text)
    print(f"\nreport: {written.html}\n        {written.markdown}")
