"""``detect``, ``segment`` and every other registered downstream task: one command each,
its flags generated from the task's config class."""

from __future__ import annotations

import argparse
import json

from condpretrain.cli.flags import add_config_flags, add_preset_flags, config_from_args
from condpretrain.downstream import DOWNSTREAM_TASKS


def register(commands: argparse._SubParsersAction) -> None:
    for name in DOWNSTREAM_TASKS.names():
        task = DOWNSTREAM_TASKS[name]
        parser = commands.add_parser(name, help=task.summary, description=task.description)
        parser.add_argument("--voc", required=True, metavar="DIR",
                            help=f"a VOC year folder with JPEGImages/, e.g. {task.voc_example}")
        parser.add_argument("--out", required=True, metavar="DIR", help="the run folder")
        parser.add_argument("--resume", action="store_true",
                            help="continue the run in --out from its checkpoint")
        add_preset_flags(parser)
        add_config_flags(parser, task.config_class)
        parser.set_defaults(handler=_run, task=name)


def _run(args: argparse.Namespace) -> int:
    task = DOWNSTREAM_TASKS[args.task]
    result = task(args.voc, config_from_args(args, task.config_class)).run(args.out, args.resume)
    # The CLI's one line of output: the headline figures, as JSON for scripts.
    if result:
        print(json.dumps({k: round(float(result[k]), 4) for k in task.metrics if k in result}))
    return 0
