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
        },
    }

    def validate(self) -> None:
        if self.fraction is not None and not 0.0 < self.fraction <= 1.0:
            raise CondPretrainError(f"--fraction must be in (0, 1], got {self.fraction}")
        if self.count is not None and self.count < 1:
            raise CondPretrainError(f"--count must be at least 1, got {self.count}")
        if self.fraction is not None and self.count is not None:
            raise CondPretrainError("give either --fraction or --count, not both")
        _positive(self, "filter_resolution", "batch_size", "clusters", "kmeans_iters")
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
    resolution: int = 224
    epochs: int = 90
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

    def resolved_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 1e-4 if self.optimizer == "adam" else 0.1

    def validate(self) -> None:
        if self.optimizer not in ("sgd", "adam"):
            raise CondPretrainError(f"--optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        _positive(self, "resolution", "epochs", "batch_size", "lr_step_epochs")
        _non_negative(self, "workers")


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
    "build_config",
    "load_yaml",
    "to_dict",
    "field",
]
