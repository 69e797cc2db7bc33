"""``pretrain``, ``finetune`` and ``export``."""

from __future__ import annotations

import argparse
import json

from condpretrain.cli.flags import add_config_flags, add_preset_flags, config_from_args
from condpretrain.config import FinetuneConfig, PretrainConfig
from condpretrain.export import FORMATS, export_backbone
from condpretrain.train.finetune import finetune
from condpretrain.train.pretrain import pretrain


def register(commands: argparse._SubParsersAction) -> None:
    pre = commands.add_parser("pretrain", help="pre-train a backbone on a (selected) pool")
    pre.add_argument("--source", action="append", required=True, metavar="[NAME=]PATH",
                     help="an image pool (repeat for several)")
    pre.add_argument("--subset", default=None,
                     help="subset.csv from `select` (default: the whole pool)")
    _run_flags(pre, PretrainConfig)
    pre.set_defaults(handler=_pretrain)

    fine = commands.add_parser("finetune", help="fine-tune a backbone on the target")
    fine.add_argument("--target", required=True, metavar="[NAME=]PATH")
    _run_flags(fine, FinetuneConfig)
    fine.set_defaults(handler=_finetune)

    export = commands.add_parser("export", help="write a backbone for another framework")
    export.add_argument("--backbone", required=True,
                        help="backbone.pt (or a run folder holding one)")
    export.add_argument("--format", choices=FORMATS, default="detectron2",
                        help="default detectron2")
    export.add_argument("--out", required=True, help="output file, e.g. backbone.pkl")
    export.set_defaults(handler=_export)


def _run_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    parser.add_argument("--out", required=True, help="the run folder")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint")
    add_preset_flags(parser)
    add_config_flags(parser, cls)


def _pretrain(args: argparse.Namespace) -> int:
    outcome = pretrain(args.source, args.out, config_from_args(args, PretrainConfig),
                       subset=args.subset, resume=args.resume)
    print(json.dumps({"run": str(outcome.run_dir), **outcome.result}))
    return 0


def _finetune(args: argparse.Namespace) -> int:
    outcome = finetune(args.target, args.out, config_from_args(args, FinetuneConfig),
                       resume=args.resume)
    print(json.dumps({"run": str(outcome.run_dir), **outcome.result}))
    return 0


def _export(args: argparse.Namespace) -> int:
    print(export_backbone(args.backbone, args.out, args.format))
    return 0
