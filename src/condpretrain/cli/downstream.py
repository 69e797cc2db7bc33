"""``detect`` and ``segment``: measure a backbone on Pascal VOC detection / segmentation."""

from __future__ import annotations

import argparse
import json

from condpretrain.cli.common import add_common_flags, overrides
from condpretrain.config import DetectConfig, SegmentConfig, build_config, config_fields


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _add_shared(parser: argparse.ArgumentParser, default_voc: str) -> None:
    parser.add_argument("--voc", required=True, metavar="DIR",
                        help=f"a VOC year folder with JPEGImages/, e.g. {default_voc}")
    parser.add_argument("--out", required=True, metavar="DIR", help="the run folder")
    parser.add_argument("--init", default=None, metavar="FILE",
                        help="backbone state_dict (from `condpretrain pretrain` or torchvision); "
                             "random initialisation when left out")
    parser.add_argument("--arch", default=None, help="backbone architecture (default resnet50)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its checkpoint")
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=None,
                        help="images per step over all processes (default 16)")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--train-split", dest="train_split", default=None)
    parser.add_argument("--test-split", dest="test_split", default=None)
    parser.add_argument("--no-amp", dest="amp", action="store_const", const=False, default=None,
                        help="train in fp32 on CUDA too")
    add_common_flags(parser)


def register(commands: argparse._SubParsersAction) -> None:
    det = commands.add_parser(
        "detect", help="Faster R-CNN R50-C4 on VOC: train on trainval, AP50/AP/AP75 on test",
        description="Train Faster R-CNN with a C4 backbone from --init on a VOC folder "
                    "(trainval) and evaluate on test: AP50 (VOC07 11-point), AP, AP75.")
    _add_shared(det, "VOCdevkit/VOC2007")
    det.add_argument("--iterations", type=int, default=None, help="training iterations (24000)")
    det.add_argument("--lr-steps", dest="lr_steps", type=_sizes, default=None,
                     help="iterations where the lr drops 10x (18000,22000)")
    det.add_argument("--min-size-train", dest="min_size_train", type=_sizes, default=None,
                     help="shorter-side sizes drawn per image (480,512,...,800)")
    det.add_argument("--min-size-test", dest="min_size_test", type=int, default=None)
    det.add_argument("--norm", choices=("bn", "frozen"), default=None,
                     help="bn: train BN (SyncBN with torchrun; MoCo's setting, default); "
                          "frozen: FrozenBatchNorm")
    det.set_defaults(handler=_run_detect)

    seg = commands.add_parser(
        "segment", help="PSANet (dilated ResNet-50) on VOC2012: mIoU/mAcc/allAcc on val",
        description="Train PSANet with a dilated backbone from --init on VOC SegmentationClass "
                    "masks (train) and evaluate on val: mIoU, mAcc, allAcc.")
    _add_shared(seg, "VOCdevkit/VOC2012")
    seg.add_argument("--epochs", type=int, default=None, help="training epochs (100)")
    seg.add_argument("--crop-size", dest="crop_size", type=int, default=None,
                     help="square training crop, 8k+1 (473)")
    seg.set_defaults(handler=_run_segment)


def _config(cls: type, args: argparse.Namespace):
    return build_config(cls, args.preset, args.config, **overrides(args, config_fields(cls)))


def _run_detect(args: argparse.Namespace) -> int:
    from condpretrain.downstream.detection import detect

    result = detect(args.voc, args.out, _config(DetectConfig, args), resume=args.resume)
    return _report(result, ("AP50", "AP", "AP75"))


def _run_segment(args: argparse.Namespace) -> int:
    from condpretrain.downstream.segmentation import segment

    result = segment(args.voc, args.out, _config(SegmentConfig, args), resume=args.resume)
    return _report(result, ("mIoU", "mAcc", "allAcc"))


def _report(result: dict, keys: tuple[str, ...]) -> int:
    # The CLI's one line of output: the headline figures, as JSON for scripts.
    if result:
        print(json.dumps({k: round(float(result[k]), 4) for k in keys if k in result}))
    return 0
