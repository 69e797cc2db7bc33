"""``detect`` and ``segment``: MoCo's / Detectron2's VOC detection and semseg's PSANet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from condpretrain.config import common
from condpretrain.config.base import Config
from condpretrain.config.options import option
from condpretrain.errors import CondPretrainError

_MIN_SIZES = (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800)


@dataclass
class DetectConfig(Config):
    """Faster R-CNN R50-C4 on VOC (07+12 trainval -> 07 test), MoCo/Detectron2's VOC
    setting."""

    # Grid: an experiment's cell sets the pre-trained backbone and its seed.
    arch: str = option("resnet50", "backbone architecture", grid=True)
    init: str | None = option(None, "backbone state_dict (from `condpretrain pretrain` or "
                              "torchvision); random initialisation when unset", metavar="FILE",
                              grid=True)
    iterations: int = option(24000, "training iterations (~23 epochs of VOC07+12 trainval, "
                             "16,551 images, at batch 16; 77 of VOC07 trainval alone)", low=0,
                             low_open=True)
    batch_size: int = option(16, "images per step over all processes", low=0, low_open=True)
    lr: float = option(0.02, "base learning rate", low=0, low_open=True)
    momentum: float = option(0.9, "SGD momentum", low=0, high=1)
    weight_decay: float = option(1e-4, "weight decay (none on norm layers)", low=0)
    lr_steps: tuple[int, ...] = option((18000, 22000), "iterations where the lr drops",
                                       low=0)
    lr_gamma: float = option(0.1, "factor of each learning-rate drop", low=0, low_open=True)
    warmup_iterations: int = option(100, "linear warm-up iterations (Detectron2's VOC "
                                    "configs)", low=0)
    warmup_factor: float = option(0.001, "learning-rate factor at the start of the warm-up",
                                  low=0, high=1, low_open=True)
    min_size_train: tuple[int, ...] = option(_MIN_SIZES, "shorter-side sizes drawn per "
                                             "training image", low=0, low_open=True)
    min_size_test: int = option(800, "shorter side at test time", low=0, low_open=True)
    max_size: int = option(1333, "longer side limit", low=0, low_open=True)
    anchor_sizes: tuple[int, ...] = option((32, 64, 128, 256, 512), "RPN anchor sizes",
                                           low=0, low_open=True)
    # Detectron2's C4 defaults: RoIs sampled per training image, proposals kept after NMS.
    rois_per_image: int = option(512, "RoIs sampled per training image", low=0, low_open=True)
    proposals_train: int = option(2000, "RPN proposals kept after NMS when training", low=0,
                                  low_open=True)
    proposals_test: int = option(1000, "RPN proposals kept after NMS when testing", low=0,
                                 low_open=True)
    norm: str = option("bn", "bn: BN trained (SyncBN under torchrun; MoCo's setting); frozen: "
                       "FrozenBatchNorm (torchvision's and Detectron2's)", choices=("bn", "frozen"))
    res5_norm: bool = option(False, "one more BatchNorm on res5's output before the box "
                             "head's pooling (SyncBN under torchrun; needs --norm bn): MoCo's "
                             "Res5ROIHeadsExtraNorm, on in all of MoCo's R50-C4 VOC and COCO "
                             "runs, supervised baselines included (Base-RCNN-C4-BN.yaml); "
                             "turn it on to reproduce their numbers")
    precise_bn: int = option(200, "before testing, recompute the BatchNorm statistics with "
                             "the final weights over this many training batches "
                             "(Detectron2's TEST.PRECISE_BN, on in MoCo's configs); 0: keep "
                             "the running ones; nothing to do with --norm frozen", low=0)
    aspect_grouping: bool = option(True, "batch landscape images with landscape ones and "
                                   "portrait with portrait (Detectron2's "
                                   "DATALOADER.ASPECT_RATIO_GROUPING): less padding per batch")
    train_split: str = option("trainval", "ImageSets/Main split to train on, in every --voc "
                              "folder")
    test_split: str = option("test", "ImageSets/Main split to evaluate on, of the first --voc "
                             "folder")
    eval_batch_size: int = option(8, "images per batch at test time", low=0, low_open=True)
    workers: int = common.workers()
    device: str = common.device()
    amp: bool = common.amp()
    deterministic: bool = common.deterministic()
    seed: int = common.seed(grid=True)
    checkpoint_minutes: float = common.checkpoint_minutes()
    log_every: int = option(20, "iterations between metrics.jsonl lines", low=0,
                            low_open=True, neutral=True)

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "small": {  # a CPU-scale schedule on small images (~128 px), not the paper's
            "arch": "resnet10",
            "iterations": 500,
            "batch_size": 2,
            "lr": 0.01,
            "lr_steps": (400,),
            "warmup_iterations": 50,
            "min_size_train": (128,),
            "min_size_test": 128,
            "max_size": 256,
            "anchor_sizes": (16, 32, 64),
            "rois_per_image": 64,
            "proposals_train": 256,
            "proposals_test": 100,
            "eval_batch_size": 4,
            "precise_bn": 20,
            "workers": 0,
            "log_every": 20,
        },
        "quick": {
            "arch": "resnet10",
            "iterations": 4,
            "batch_size": 2,
            "lr": 0.01,
            "lr_steps": (3,),
            "warmup_iterations": 1,
            "min_size_train": (64,),
            "min_size_test": 64,
            "max_size": 128,
            "anchor_sizes": (8, 16, 32),
            "rois_per_image": 16,
            "proposals_train": 64,
            "proposals_test": 32,
            "eval_batch_size": 4,
            "precise_bn": 2,
            "workers": 0,
            "log_every": 2,
        },
    }

    def check(self) -> None:
        if not self.min_size_train:
            raise CondPretrainError("--min-size-train needs positive sizes")
        if list(self.lr_steps) != sorted(self.lr_steps):
            raise CondPretrainError(f"--lr-steps must be increasing, got {list(self.lr_steps)}")
        if self.res5_norm and self.norm != "bn":
            raise CondPretrainError("--res5-norm needs --norm bn (a frozen extra norm would "
                                    "do nothing)")


@dataclass
class SegmentConfig(Config):
    """PSANet (dilated ResNet-50) on VOC2012 SegmentationClass masks.

    The paper evaluates on VOC2012 ``test``, whose masks are not public (only the
    evaluation server has them); the default here is ``val``, the usual stand-in.
    """

    arch: str = option("resnet50", "backbone architecture", grid=True)
    init: str | None = option(None, "backbone state_dict; random initialisation when unset",
                              metavar="FILE", grid=True)
    epochs: int = option(100, "training epochs", low=0, low_open=True)
    batch_size: int = option(16, "images per step over all processes", low=0, low_open=True)
    lr: float = option(0.01, "base learning rate (poly schedule)", low=0, low_open=True)
    head_lr_mult: float = option(10.0, "new layers learn this much faster, as in the PSANet "
                                 "code", low=0)
    momentum: float = option(0.9, "SGD momentum", low=0, high=1)
    weight_decay: float = option(1e-4, "weight decay", low=0)
    poly_power: float = option(0.9, "power of the poly schedule", low=0, low_open=True)
    crop_size: int = option(465, "square training crop, 8k+1 (semseg's VOC config)", low=0,
                            low_open=True)
    scale_min: float = option(0.5, "smallest random scale", low=0, low_open=True)
    scale_max: float = option(2.0, "largest random scale", low=0, low_open=True)
    rotate: float = option(10.0, "largest random rotation in degrees either way, applied to "
                           "half the training images as semseg; 0: none", low=0, high=180)
    blur: bool = option(True, "5x5 Gaussian blur (OpenCV's [1,4,6,4,1]/16) on half the "
                        "training images, as semseg")
    aux_weight: float = option(0.4, "weight of the auxiliary (res4) loss", low=0)
    shrink_factor: int = option(2, "attention on a map this much smaller, as PSANet does",
                                low=0, low_open=True)
    eval_base_size: int = option(512, "at test time the longer side is resized to this "
                                 "before the sliding crops, and the scores back (semseg's "
                                 "base_size, one scale); 0: the image as it is", low=0)
    eval_flip: bool = option(True, "average with the mirrored image at test time, as semseg "
                             "does")
    train_split: str = option("train", "ImageSets/Segmentation split to train on")
    test_split: str = option("val", "ImageSets/Segmentation split to evaluate on")
    workers: int = common.workers()
    device: str = common.device()
    amp: bool = common.amp()
    deterministic: bool = common.deterministic()
    seed: int = common.seed(grid=True)
    checkpoint_minutes: float = common.checkpoint_minutes()

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "small": {  # a CPU-scale schedule on small crops, not the paper's
            "arch": "resnet10",
            "epochs": 10,
            "batch_size": 8,
            "lr": 0.01,
            "crop_size": 65,
            "eval_base_size": 70,  # semseg's 512 for 465, in proportion
            "workers": 0,
        },
        "quick": {
            "arch": "resnet10",
            "epochs": 2,
            "batch_size": 4,
            "lr": 0.01,
            "crop_size": 33,
            "scale_min": 0.75,
            "scale_max": 1.25,
            "shrink_factor": 1,
            "eval_base_size": 36,
            "eval_flip": False,
            "workers": 0,
        },
    }

    def check(self) -> None:
        if self.scale_min > self.scale_max:
            raise CondPretrainError("--scale-min must not exceed --scale-max")
        if (self.crop_size - 1) % 8 != 0:
            raise CondPretrainError(
                f"--crop-size must be 8k+1 (e.g. 465, 33) so the stride-8 feature map aligns, "
                f"got {self.crop_size}")
