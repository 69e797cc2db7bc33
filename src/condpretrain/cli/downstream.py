"""``detect``, ``segment`` and every other registered downstream task: one command each,
its flags generated from the task's config class."""

from __future__ import annotations

import argparse
import json
from typing import Any

from condpretrain.cli.flags import add_config_flags, add_preset_flags, config_from_args
from condpretrain.downstream import DOWNSTREAM_TASKS
from condpretrain.downstream.task import run_task


def register(commands: argparse._SubParsersAction) -> None:
    for name in DOWNSTREAM_TASKS.names():
        task = DOWNSTREAM_TASKS[name]
        parser = commands.add_parser(name, help=task.summary, description=task.description)
        parser.add_argument("--voc", required=True, metavar="DIR", **_voc_flag(task))
        parser.add_argument("--out", required=True, metavar="DIR", help="the run folder")
        parser.add_argument("--resume", action="store_true",
                            help="continue the run in --out from its checkpoint")
        add_preset_flags(parser)
        add_config_flags(parser, task.config_class)
        parser.set_defaults(handler=_run, task=name)


def _voc_flag(task: type) -> dict[str, Any]:
    """Always collected as a list, so that a one-folder task given two says so (instead
    of argparse keeping the last); a task taking several says how it uses them."""
    if task.voc_folders == 1:
        return {"action": "append",
                "help": f"a VOC year folder with JPEGImages/, e.g. {task.voc_example}"}
    return {"action": "append",
            "help": "a VOC year folder with JPEGImages/; repeat it to train on several: "
                    "--voc VOCdevkit/VOC2007 --voc VOCdevkit/VOC2012 trains on both trainval "
                    "splits and tests on the first folder's test split (MoCo's VOC07+12 "
                    "setting)"}


def _run(args: argparse.Namespace) -> int:
    task = DOWNSTREAM_TASKS[args.task]
    result = run_task(args.task, args.voc, args.out, config_from_args(args, task.config_class),
                      args.resume)
    # The CLI's one line of output: the headline figures, as JSON for scripts.
    if result:
        print(json.dumps({k: round(float(result[k]), 4) for k in task.metrics if k in result}))
    return 0
