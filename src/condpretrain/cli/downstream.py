"""``detect`` and ``segment``: measure a backbone on Pascal VOC detection / segmentation."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from condpretrain.cli.flags import add_config_flags, add_preset_flags, config_from_args
from condpretrain.config import DetectConfig, SegmentConfig
from condpretrain.downstream import detect, segment


def register(commands: argparse._SubParsersAction) -> None:
    det = commands.add_parser(
        "detect", help="Faster R-CNN R50-C4 on VOC: train on trainval, AP50/AP/AP75 on test",
        description="Train Faster R-CNN with a C4 backbone from --init on a VOC folder "
                    "(trainval) and evaluate on test: AP50 (VOC07 11-point), AP, AP75.")
    _add_shared(det, "VOCdevkit/VOC2007", DetectConfig)
    det.set_defaults(handler=_runner(detect, DetectConfig, ("AP50", "AP", "AP75")))

    seg = commands.add_parser(
        "segment", help="PSANet (dilated ResNet-50) on VOC2012: mIoU/mAcc/allAcc on val",
        description="Train PSANet with a dilated backbone from --init on VOC SegmentationClass "
                    "masks (train) and evaluate on val: mIoU, mAcc, allAcc.")
    _add_shared(seg, "VOCdevkit/VOC2012", SegmentConfig)
    seg.set_defaults(handler=_runner(segment, SegmentConfig, ("mIoU", "mAcc", "allAcc")))


def _add_shared(parser: argparse.ArgumentParser, default_voc: str, cls: type) -> None:
    parser.add_argument("--voc", required=True, metavar="DIR",
                        help=f"a VOC year folder with JPEGImages/, e.g. {default_voc}")
    parser.add_argument("--out", required=True, metavar="DIR", help="the run folder")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its checkpoint")
    add_preset_flags(parser)
    add_config_flags(parser, cls)


def _runner(task: Callable[..., dict[str, Any]], cls: type, keys: tuple[str, ...]
            ) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        result = task(args.voc, args.out, config_from_args(args, cls), resume=args.resume)
        # The CLI's one line of output: the headline figures, as JSON for scripts.
        if result:
            print(json.dumps({k: round(float(result[k]), 4) for k in keys if k in result}))
        return 0

    return run
