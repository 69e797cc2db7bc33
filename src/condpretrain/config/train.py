"""``pretrain`` and ``finetune``: the paper's recipes as defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from condpretrain.config import common
from condpretrain.config.base import Config
from condpretrain.config.options import option
from condpretrain.registry import PRETRAIN_METHODS

_BY_MODE = ("mode", PRETRAIN_METHODS)


@dataclass
class PretrainConfig(Config):
    """Pre-train a backbone on a (subset of a) pool with a registered method."""

    mode: str = option("supervised", "pre-training method", choices=PRETRAIN_METHODS.choices(),
                       grid=True)
    arch: str | None = option(None, "any torchvision ResNet, e.g. resnet34",
                              default_by=_BY_MODE)
    resolution: int = option(224, "training resolution in pixels (112 for the cheap setting)",
                             low=0, low_open=True, grid=True)
    epochs: int | None = option(None, "training epochs", low=1, default_by=_BY_MODE)
    batch_size: int = option(256, "images per batch, per process", low=0, low_open=True)
    lr: float | None = option(None, "learning rate", low=0, low_open=True, default_by=_BY_MODE)
    momentum: float = option(0.9, "SGD momentum", low=0, high=1)
    weight_decay: float = option(1e-4, "weight decay", low=0)
    lr_step_epochs: int = option(30, "epochs between learning-rate drops (step schedules)",
                                 low=0, low_open=True)
    lr_gamma: float = option(0.1, "factor of each learning-rate drop", low=0, low_open=True)
    crop_scale: float = common.crop_scale()
    flip: bool = common.flip()
    moco_dim: int = option(128, "MoCo: embedding dimension", low=0, low_open=True)
    moco_queue: int = option(65536, "MoCo: negatives in the queue (clamped to the subset)",
                             low=0, low_open=True)
    moco_momentum: float = option(0.999, "MoCo: key encoder momentum", low=0, high=1)
    moco_temperature: float = option(0.2, "MoCo: softmax temperature", low=0, low_open=True)
    moco_mlp: bool = option(True, "MoCo-v2's MLP head (--no-moco-mlp: MoCo-v1's linear head)")
    moco_bn_splits: int = option(8, "MoCo on one process: batch-norm statistics per sub-batch "
                                 "with the keys shuffled across them, the single-GPU stand-in "
                                 "for shuffle-BN (lowered to divide --batch-size; 1: off; "
                                 "unused under DDP)", low=1)
    moco_augment_on: str = option(
        "workers", "MoCo: where the colour jitter, greyscale and blur run: workers (each view "
        "in the loader's workers, torchvision's transforms) or device (drawn in the workers, "
        "applied to the whole batch on the training device: on a GPU host the workers' CPU "
        "caps MoCo at 224 px; the crop and flip stay in the workers)",
        choices=("workers", "device"))
    cache: bool = option(True, "pre-resize the images once instead of decoding every epoch",
                         neutral=True)
    cache_dir: str | None = option(None, "where the pre-resized cache goes (RUN/cache when "
                                   "unset)", neutral=True, metavar="DIR")
    init: str | None = option(None, "start from this backbone file (nothing is downloaded)",
                              grid=True, metavar="CKPT")
    workers: int = common.workers()
    device: str = common.device()
    amp: bool = common.amp()
    compile: bool = common.compile_model()
    deterministic: bool = common.deterministic()
    seed: int = common.seed(grid=True)
    checkpoint_minutes: float = common.checkpoint_minutes()
    max_image_pixels: int = common.max_image_pixels()

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "small": {
            "arch": "resnet10",
            "resolution": 32,
            "epochs": 12,
            "batch_size": 64,
            "lr": 0.05,
            "lr_step_epochs": 8,
            "crop_scale": 0.35,  # at 16-32 px an 8% crop keeps a few pixels of the object
            "moco_dim": 64,
            "moco_queue": 1024,
            "moco_momentum": 0.99,
            "workers": 0,
        },
        "quick": {
            "arch": "resnet10",
            "resolution": 32,
            "epochs": 3,
            "batch_size": 32,
            "lr": 0.05,
            "lr_step_epochs": 2,
            "moco_dim": 32,
            "moco_queue": 256,
            "moco_momentum": 0.99,
            "workers": 0,
        },
    }


@dataclass
class FinetuneConfig(Config):
    """Fine-tune a backbone (new linear head, whole network trained) on the target."""

    arch: str = option("resnet34", "backbone architecture (the pre-trained one)", grid=True)
    init: str | None = option(None, "backbone file to start from; random initialisation "
                              "when unset", grid=True, metavar="CKPT")
    backbone: str = option("auto", "recipe for the --init backbone: that of the method it was "
                           "pre-trained with (auto: read from the run.json beside it)",
                           choices=lambda: ["auto", *PRETRAIN_METHODS.names()])
    resolution: int = option(224, "training resolution in pixels", low=0, low_open=True)
    epochs: int | None = option(None, "training epochs (90; the backbone method's recipe, "
                                "e.g. 100 for MoCo, when unset)", low=1)
    batch_size: int = option(64, "images per batch, per process", low=0, low_open=True)
    optimizer: str = option("sgd", "sgd, or adam (the paper's choice for fMoW)",
                            choices=("sgd", "adam"))
    lr: float | None = option(None, "learning rate (0.1 sgd, 1e-4 adam; the backbone "
                              "method's recipe, e.g. 0.001 for MoCo, when unset)", low=0,
                              low_open=True)
    momentum: float = option(0.9, "SGD momentum", low=0, high=1)
    weight_decay: float = option(1e-4, "weight decay", low=0)
    lr_step_epochs: int = option(30, "epochs between learning-rate drops", low=0,
                                 low_open=True)
    lr_gamma: float = option(0.1, "factor of each learning-rate drop", low=0, low_open=True)
    crop_scale: float = common.crop_scale()
    flip: bool = common.flip()
    eval_every: int = option(1, "epochs between evaluations on the test split (the last "
                             "epoch is always evaluated)", low=1)
    workers: int = common.workers()
    device: str = common.device()
    amp: bool = common.amp()
    compile: bool = common.compile_model()
    deterministic: bool = common.deterministic()
    seed: int = common.seed(grid=True)
    checkpoint_minutes: float = common.checkpoint_minutes()
    max_image_pixels: int = common.max_image_pixels()
    cache: bool = option(True, "pre-resize the target once instead of decoding every epoch",
                         neutral=True)
    cache_dir: str | None = option(None, "where the pre-resized cache goes (RUN/cache when "
                                   "unset)", neutral=True, metavar="DIR")

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "small": {
            "arch": "resnet10",
            "resolution": 32,
            "epochs": 20,
            "batch_size": 32,
            "lr": 0.02,
            "lr_step_epochs": 15,
            "crop_scale": 0.35,
            "eval_every": 10,
            "workers": 0,
        },
        "quick": {
            "arch": "resnet10",
            "resolution": 32,
            "epochs": 4,
            "batch_size": 32,
            "lr": 0.05,
            "lr_step_epochs": 3,
            "workers": 0,
        },
    }

    def resolved_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 1e-4 if self.optimizer == "adam" else 0.1
