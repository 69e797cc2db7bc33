"""``run``, ``report`` and ``demo``: the experiment grid, its report, the embedded demo.

The only printing of the experiment group happens here: the Table-2 tables after a
report or a demo, and where the files went.
"""

from __future__ import annotations

import argparse
import time

from condpretrain.errors import CondPretrainError


def register(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "run", help="run an experiment grid (targets x methods x budgets x resolutions x modes)",
        description="Run select -> pretrain -> finetune for every cell and seed of an "
                    "experiment file; resumable: finished cells are skipped.")
    run.add_argument("experiment", metavar="EXPERIMENT.yaml", help="the experiment file")
    run.add_argument("--out", required=True, metavar="DIR", help="output folder (results.csv)")
    run.add_argument("--no-report", action="store_true", help="do not write the report after")
    run.set_defaults(handler=_run)

    report = commands.add_parser(
        "report", help="write report.md and report.html of an experiment folder",
        description="Tables in the layout of the paper's Table 2, accuracy against cost, "
                    "what each method picked.")
    report.add_argument("out", metavar="DIR", help="an experiment output folder")
    report.set_defaults(handler=_report)

    demo = commands.add_parser(
        "demo", help="run the embedded demo experiment (no data needed, a few minutes on CPU)",
        description="Target: scikit-learn's digits; pool: characters rendered from "
                    "matplotlib's fonts. All methods and baselines, two budgets, two "
                    "resolutions, quick preset; writes the report and prints the table.")
    demo.add_argument("--out", default="condpretrain-demo", metavar="DIR",
                      help="output folder (default: ./condpretrain-demo)")
    demo.add_argument("--pool-per-class", type=int, default=None,
                      help="rendered images per character class (default 30; the "
                           "pool has 108 classes, ten of them digits)")
    demo.set_defaults(handler=_demo)


def _run(args: argparse.Namespace) -> int:
    from condpretrain import api

    result = api.run(args.experiment, args.out)
    print(f"{result.ran} cell(s) run, {result.skipped} already done -> {result.results_csv}")
    if not args.no_report:
        _print_report(api.report(args.out))
    return 0


def _report(args: argparse.Namespace) -> int:
    from condpretrain import api

    _print_report(api.report(args.out))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from condpretrain import api
    from condpretrain.demo import DemoConfig

    config = DemoConfig()
    if args.pool_per_class is not None:
        if args.pool_per_class < 1:
            raise CondPretrainError("--pool-per-class must be at least 1")
        config.pool_per_class = args.pool_per_class
    started = time.perf_counter()
    result = api.demo(args.out, config)
    _print_report(result.report)
    print(f"demo finished in {(time.perf_counter() - started) / 60:.1f} min")
    return 0


def _print_report(report) -> None:
    print(report.table_text)
    print(f"\nreport: {report.html}\n        {report.markdown}")
