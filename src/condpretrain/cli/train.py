"""``pretrain``, ``finetune`` and ``export``: flags default to None so presets apply."""

from __future__ import annotations

import argparse
import json

from condpretrain.cli.common import add_common_flags, overrides
from condpretrain.config import FinetuneConfig, PretrainConfig, build_config, config_fields


def register(commands: argparse._SubParsersAction) -> None:
    _register_pretrain(commands)
    _register_finetune(commands)
    _register_export(commands)


def _training_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="the run folder")
    parser.add_argument("--arch", default=None, help="any torchvision ResNet, e.g. resnet34")
    parser.add_argument("--resolution", type=int, default=None,
                        help="training resolution in pixels (224; 112 for the cheap setting)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="per process")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--momentum", type=float, default=None)
    parser.add_argument("--weight-decay", type=float, default=None)
    parser.add_argument("--lr-step-epochs", type=int, default=None)
    parser.add_argument("--lr-gamma", type=float, default=None)
    parser.add_argument("--init", metavar="CKPT", default=None,
                        help="start from this backbone file (nothing is downloaded)")
    parser.add_argument("--no-amp", dest="amp", action="store_const", const=False, default=None,
                        help="full precision on GPU")
    parser.add_argument("--no-cache", dest="cache", action="store_const", const=False,
                        default=None, help="decode and resize every image every epoch")
    parser.add_argument("--cache-dir", default=None, help="where the pre-resized cache goes")
    parser.add_argument("--checkpoint-minutes", type=float, default=None,
                        help="mid-epoch checkpoint interval (default 10)")
    parser.add_argument("--max-image-pixels", type=int, default=None)
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint")
    add_common_flags(parser)


def _register_pretrain(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("pretrain", help="pre-train a backbone on a (selected) pool")
    parser.add_argument("--source", action="append", required=True, metavar="[NAME=]PATH",
                        help="an image pool (repeat for several)")
    parser.add_argument("--subset", default=None,
                        help="subset.csv from `select` (default: the whole pool)")
    parser.add_argument("--mode", choices=("supervised", "moco"), default=None)
    parser.add_argument("--moco-dim", type=int, default=None)
    parser.add_argument("--moco-queue", type=int, default=None)
    parser.add_argument("--moco-momentum", type=float, default=None)
    parser.add_argument("--moco-temperature", type=float, default=None)
    parser.add_argument("--no-moco-mlp", dest="moco_mlp", action="store_const", const=False,
                        default=None, help="MoCo-v1's linear head instead of the MLP")
    _training_flags(parser)
    parser.set_defaults(handler=_pretrain)


def _register_finetune(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("finetune", help="fine-tune a backbone on the target")
    parser.add_argument("--target", required=True, metavar="[NAME=]PATH")
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default=None)
    parser.add_argument("--backbone", choices=("auto", "supervised", "moco"), default=None,
                        help="recipe for the --init backbone (auto: read its run.json)")
    _training_flags(parser)
    parser.set_defaults(handler=_finetune)


def _register_export(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("export", help="write a backbone for another framework")
    parser.add_argument("--backbone", required=True,
                        help="backbone.pt (or a run folder holding one)")
    parser.add_argument("--format", choices=("detectron2", "torchvision"), default="detectron2")
    parser.add_argument("--out", required=True, help="output file, e.g. backbone.pkl")
    parser.set_defaults(handler=_export)


def _pretrain(args: argparse.Namespace) -> int:
    from condpretrain.train.pretrain import pretrain

    config = build_config(PretrainConfig, args.preset, args.config,
                          **overrides(args, config_fields(PretrainConfig)))
    outcome = pretrain(args.source, args.out, config, subset=args.subset, resume=args.resume)
    print(json.dumps({"run": str(outcome.run_dir), **outcome.result}))
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from condpretrain.train.finetune import finetune

    config = build_config(FinetuneConfig, args.preset, args.config,
                          **overrides(args, config_fields(FinetuneConfig)))
    outcome = finetune(args.target, args.out, config, resume=args.resume)
    print(json.dumps({"run": str(outcome.run_dir), **outcome.result}))
    return 0


def _export(args: argparse.Namespace) -> int:
    from condpretrain.export import export_backbone

    print(export_backbone(args.backbone, args.out, args.format))
    return 0
