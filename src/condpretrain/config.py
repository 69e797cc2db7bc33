"""Typed configs with the paper's defaults, presets, and YAML in/out.

Every command has one dataclass here. Its field defaults are the paper's setting (the
``paper`` preset); ``quick`` swaps in small models and short schedules for CPU trials,
the demo and tests. Resolution order, last wins: dataclass defaults -> preset -> YAML
file -> explicit flags. The resolved config is saved beside every run so the exact
command can be rebuilt.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from condpretrain.errors import CondPretrainError

PRESET_NAMES = ("paper", "quick")

C = TypeVar("C")


@dataclass
class SelectConfig:
    """Score a source pool against a target and keep a budget of it."""

    method: str = "domain-classifier"
    fraction: float | None = None
    count: int | None = None
    seed: int = 0
    # Filtering always runs at 224 px in the paper, whatever the pre-training resolution.
    filter_resolution: int = 224
    batch_size: int = 256
    workers: int = 8
    device: str = "auto"
    amp: bool = True
    max_image_pixels: int = 178_956_970  # Pillow's own decompression-bomb limit
    cache_dir: str | None = None
    # Scores are saved every chunk, so a killed run loses at most one chunk of work.
    chunk_size: int = 50_000
    # Domain classifier: ResNet-18 telling pool from target, balanced batches.
    dc_arch: str = "resnet18"
    dc_epochs: int = 10
    dc_lr: float = 0.01
    # Target-trained classifier shared by clustering and (inverse) active learning.
    target_arch: str = "resnet18"
    target_epochs: int = 30
    target_lr: float = 0.01
    features_from: str | None = None
    clusters: int = 200
    kmeans_iters: int = 25

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "quick": {
            "filter_resolution": 32,
            "batch_size": 64,
            "workers": 0,
            "dc_arch": "resnet10",
            "dc_epochs": 3,
            "dc_lr": 0.05,
            "target_arch": "resnet10",
            "target_epochs": 5,
            "target_lr": 0.05,
            "clusters": 20,
            "kmeans_iters": 10,
            "chunk_size": 5_000,
        },
    }

    def validate(self) -> None:
        if self.fraction is not None and not 0.0 < self.fraction <= 1.0:
            raise CondPretrainError(f"--fraction must be in (0, 1], got {self.fraction}")
        if self.count is not None and self.count < 1:
            raise CondPretrainError(f"--count must be at least 1, got {self.count}")
        if self.fraction is not None and self.count is not None:
            raise CondPretrainError("give either --fraction or --count, not both")
        _positive(self, "filter_resolution", "batch_size", "clusters", "kmeans_iters",
                  "chunk_size")
        _non_negative(self, "workers", "dc_epochs", "target_epochs")


@dataclass
class PretrainConfig:
    """Pre-train a backbone on a (subset of a) pool: supervised or MoCo-v2."""

    mode: str = "supervised"
    arch: str | None = None  # resnet34 (supervised) / resnet50 (moco) when unset
    resolution: int = 224
    epochs: int | None = None  # 90 (supervised) / 200 (moco) when unset
    batch_size: int = 256
    lr: float | None = None  # 0.01 (supervised) / 0.03 x batch/256 (moco) when unset
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_step_epochs: int = 30
    lr_gamma: float = 0.1
    moco_dim: int = 128
    moco_queue: int = 65536
    moco_momentum: float = 0.999
    moco_temperature: float = 0.2
    moco_mlp: bool = True
    cache: bool = True  # pre-resize the subset once instead of decoding every epoch
    cache_dir: str | None = None  # where the pre-resized cache lives (default: RUN/cache)
    init: str | None = None
    workers: int = 8
    device: str = "auto"
    amp: bool = True
    seed: int = 0
    checkpoint_minutes: float = 10.0
    max_image_pixels: int = 178_956_970

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
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

    def resolved_arch(self) -> str:
        return self.arch or ("resnet50" if self.mode == "moco" else "resnet34")

    def resolved_epochs(self) -> int:
        if self.epochs is not None:
            return self.epochs
        return 200 if self.mode == "moco" else 90

    def resolved_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 0.03 * self.batch_size / 256 if self.mode == "moco" else 0.01

    def validate(self) -> None:
        if self.mode not in ("supervised", "moco"):
            raise CondPretrainError(f"--mode must be 'supervised' or 'moco', got {self.mode!r}")
        _positive(self, "resolution", "batch_size", "lr_step_epochs")
        _non_negative(self, "workers")


@dataclass
class FinetuneConfig:
    """Fine-tune a backbone (new linear head, whole network trained) on the target."""

    arch: str = "resnet34"
    init: str | None = None
    # "auto": a MoCo backbone (run.json beside --init says so) gets the paper's MoCo recipe
    backbone: str = "auto"
    resolution: int = 224
    epochs: int | None = None  # 90; 100 for MoCo backbones when unset
    batch_size: int = 64
    optimizer: str = "sgd"  # "adam" is the paper's choice for fMoW
    lr: float | None = None  # 0.1 (sgd) / 1e-4 (adam) when unset; 0.001 for MoCo backbones
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_step_epochs: int = 30
    lr_gamma: float = 0.1
    workers: int = 8
    device: str = "auto"
    amp: bool = True
    seed: int = 0
    checkpoint_minutes: float = 10.0
    max_image_pixels: int = 178_956_970

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
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
    cache: bool = True  # pre-resize the target once instead of decoding every epoch
    cache_dir: str | None = None

    def resolved_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 1e-4 if self.optimizer == "adam" else 0.1

    def validate(self) -> None:
        if self.optimizer not in ("sgd", "adam"):
            raise CondPretrainError(f"--optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.backbone not in ("auto", "supervised", "moco"):
            raise CondPretrainError(
                f"--backbone must be 'auto', 'supervised' or 'moco', got {self.backbone!r}")
        if self.epochs is not None:
            _positive(self, "epochs")
        _positive(self, "resolution", "batch_size", "lr_step_epochs")
        _non_negative(self, "workers")


@dataclass
class DetectConfig:
    """Faster R-CNN R50-C4 on VOC (trainval -> test), MoCo/Detectron2's VOC setting."""

    arch: str = "resnet50"
    init: str | None = None
    iterations: int = 24000  # ~23 epochs of trainval2007 at batch 16
    batch_size: int = 16  # images per step, summed over all processes
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_steps: tuple[int, ...] = (18000, 22000)
    lr_gamma: float = 0.1
    warmup_iterations: int = 100  # Detectron2's PascalVOC-Detection configs
    warmup_factor: float = 0.001
    min_size_train: tuple[int, ...] = (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800)
    min_size_test: int = 800
    max_size: int = 1333
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    # Detectron2's C4 defaults: RoIs sampled per training image, proposals kept after NMS.
    rois_per_image: int = 512
    proposals_train: int = 2000
    proposals_test: int = 1000
    # "bn": BN trained (SyncBN under DDP), MoCo's choice for its backbones;
    # "frozen": FrozenBatchNorm, torchvision's and Detectron2's for supervised ones.
    norm: str = "bn"
    train_split: str = "trainval"
    test_split: str = "test"
    eval_batch_size: int = 8
    workers: int = 8
    device: str = "auto"
    amp: bool = True
    seed: int = 0
    checkpoint_minutes: float = 10.0
    log_every: int = 20  # iterations between metrics.jsonl lines

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
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
            "workers": 0,
            "log_every": 2,
        },
    }

    def validate(self) -> None:
        if self.norm not in ("bn", "frozen"):
            raise CondPretrainError(f"--norm must be 'bn' or 'frozen', got {self.norm!r}")
        _positive(self, "iterations", "batch_size", "lr", "min_size_test", "max_size",
                  "eval_batch_size", "log_every", "rois_per_image", "proposals_train",
                  "proposals_test")
        _non_negative(self, "workers", "warmup_iterations")
        if not self.min_size_train or min(self.min_size_train) <= 0:
            raise CondPretrainError("--min-size-train needs positive sizes")
        if list(self.lr_steps) != sorted(self.lr_steps):
            raise CondPretrainError(f"--lr-steps must be increasing, got {list(self.lr_steps)}")


@dataclass
class SegmentConfig:
    """PSANet (dilated ResNet-50) on VOC2012 SegmentationClass masks.

    The paper evaluates on VOC2012 ``test``, whose masks are not public (only the
    evaluation server has them); the default here is ``val``, the usual stand-in.
    """

    arch: str = "resnet50"
    init: str | None = None
    epochs: int = 100
    batch_size: int = 16  # images per step, summed over all processes
    lr: float = 0.01
    head_lr_mult: float = 10.0  # new layers learn 10x faster, as in the PSANet code
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    crop_size: int = 473
    scale_min: float = 0.5
    scale_max: float = 2.0
    aux_weight: float = 0.4
    shrink_factor: int = 2  # attention on a 2x smaller map, as PSANet does
    eval_flip: bool = True  # average with the mirrored image at test time, as semseg does
    train_split: str = "train"
    test_split: str = "val"
    workers: int = 8
    device: str = "auto"
    amp: bool = True
    seed: int = 0
    checkpoint_minutes: float = 10.0

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "quick": {
            "arch": "resnet10",
            "epochs": 2,
            "batch_size": 4,
            "lr": 0.01,
            "crop_size": 33,
            "scale_min": 0.75,
            "scale_max": 1.25,
            "shrink_factor": 1,
            "eval_flip": False,
            "workers": 0,
        },
    }

    def validate(self) -> None:
        _positive(self, "epochs", "batch_size", "lr", "crop_size", "shrink_factor",
                  "scale_min", "scale_max")
        _non_negative(self, "workers", "aux_weight", "head_lr_mult")
        if self.scale_min > self.scale_max:
            raise CondPretrainError("--scale-min must not exceed --scale-max")
        if (self.crop_size - 1) % 8 != 0:
            raise CondPretrainError(
                f"--crop-size must be 8k+1 (e.g. 473, 33) so the stride-8 feature map aligns, "
                f"got {self.crop_size}")


def build_config(
    cls: type[C],
    preset: str = "paper",
    yaml_file: str | Path | None = None,
    **overrides: Any,
) -> C:
    """Defaults -> preset -> YAML -> overrides (``None`` means 'not given')."""
    if preset not in cls.PRESETS:  # type: ignore[attr-defined]
        raise CondPretrainError(
            f"--preset must be one of {', '.join(cls.PRESETS)}, got {preset!r}"  # type: ignore[attr-defined]
        )
    values: dict[str, Any] = dict(cls.PRESETS[preset])  # type: ignore[attr-defined]
    if yaml_file is not None:
        values.update(_checked_keys(cls, load_yaml(yaml_file), str(yaml_file)))
    values.update(_checked_keys(cls, {k: v for k, v in overrides.items() if v is not None}, "flags"))
    config = dataclasses.replace(cls(), **values)
    config.validate()  # type: ignore[attr-defined]
    return config


def config_fields(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CondPretrainError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise CondPretrainError(f"{path}: not valid YAML ({_first_line(exc)})") from None
    if not isinstance(data, dict):
        raise CondPretrainError(f"{path}: expected a mapping of option: value at the top level")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _checked_keys(cls: type, values: dict[str, Any], where: str) -> dict[str, Any]:
    known = set(config_fields(cls))
    for key in values:
        if key not in known:
            raise CondPretrainError(
                f"{where}: unknown option {key!r} for {cls.__name__} "
                f"(known: {', '.join(sorted(known))})"
            )
    return values


def _positive(config: Any, *names: str) -> None:
    for name in names:
        if getattr(config, name) <= 0:
            raise CondPretrainError(f"--{name.replace('_', '-')} must be positive")


def _non_negative(config: Any, *names: str) -> None:
    for name in names:
        if getattr(config, name) < 0:
            raise CondPretrainError(f"--{name.replace('_', '-')} must not be negative")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


__all__ = [
    "PRESET_NAMES",
    "SelectConfig",
    "PretrainConfig",
    "FinetuneConfig",
    "DetectConfig",
    "SegmentConfig",
    "build_config",
    "load_yaml",
    "to_dict",
    "field",
]
