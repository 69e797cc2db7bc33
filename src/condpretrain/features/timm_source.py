"""``timm:NAME[@WEIGHTS]``: the pooled features of any timm model (``pip install
'condpretrain[timm]'``).

The model is built without its head (``num_classes=0``), so its output is the pooled
feature vector. Its weights come, in this order, from the file the user names after ``@``
(.safetensors, or .pth/.pt read with ``weights_only``), from timm's Hugging Face cache
(looked up offline: a selection never downloads), or else are random, seeded by
``--seed`` and announced with a warning, since random features say little about relevance.

Images reach every source normalised with the ImageNet statistics at
``--filter-resolution``; a model trained with other statistics (CLIP's, or 0.5/0.5) or
at a fixed input size (most ViTs) sees them converted to what it was trained on.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from condpretrain.data.images import IMAGENET_MEAN, IMAGENET_STD
from condpretrain.data.sources import Target
from condpretrain.device import prepare_model
from condpretrain.errors import CondPretrainError
from condpretrain.features.base import FEATURES, FeatureContext, FeatureSource
from condpretrain.log import get_logger

log = get_logger(__name__)

OPTION = "--features"
INSTALL_HINT = "pip install 'condpretrain[timm]'"
# What timm's own Hugging Face repos hold, preferred first (safetensors cannot hold code).
HUB_FILES = ("model.safetensors", "pytorch_model.bin")


@FEATURES.register
class TimmFeatures(FeatureSource):
    name = "timm"
    summary = ("any timm model: --features timm:NAME[@WEIGHTS] (weights from the file, else "
               "timm's cache, else random with a warning; needs condpretrain[timm])")
    order = 3

    def extractor(self, target: Target | None, context: FeatureContext) -> nn.Module:
        # num_classes=0 already leaves no head: nothing to replace, unlike a ResNet's fc.
        return prepare_model(self.network(target, context), context.device).eval()

    def network(self, target: Target | None, context: FeatureContext) -> nn.Module:
        name, weights = parse_timm_spec(context.config.features)
        model = create_headless(import_timm(), name, context.config.seed)
        record: dict[str, Any] = {"from": "timm", "model": name}
        path = Path(weights) if weights else cached_weights(model)
        if path is None:
            log.warning("%s timm:%s: no weights given (timm:%s@FILE) nor in timm's cache: "
                        "using RANDOM weights (seed %d), whose features say little about "
                        "relevance", OPTION, name, name, context.config.seed)
            record["weights"] = f"random, seed {context.config.seed}"
        else:
            load_weights(model, read_state_dict(path), path)
            stat = path.stat()  # the key of the cached embeddings changes with the file
            record["weights"] = {"path": str(path.resolve()), "bytes": stat.st_size,
                                 "mtime_ns": stat.st_mtime_ns}
        context.models_used["features"] = record
        return ModelInput(model, context.config.filter_resolution)


def parse_timm_spec(features: str) -> tuple[str, str]:
    """``timm:NAME@WEIGHTS`` -> (NAME, WEIGHTS); WEIGHTS is '' when not given."""
    spec = features.partition(":")[2]
    name, _, weights = spec.partition("@")
    if not name:
        raise CondPretrainError(f"{OPTION}: timm needs a model name: timm:NAME[@WEIGHTS], "
                                "e.g. timm:resnet50")
    if weights and not Path(weights).is_file():
        raise CondPretrainError(f"{OPTION} {features}: no such weights file: {weights}")
    return name, weights


def import_timm() -> ModuleType:
    """timm, an optional extra: missing, it is a one-line error saying how to install it."""
    try:
        return importlib.import_module("timm")
    except ImportError:
        raise CondPretrainError(f"{OPTION} timm:NAME needs timm: {INSTALL_HINT}") from None


def create_headless(timm: ModuleType, name: str, seed: int) -> nn.Module:
    """The model ``name`` without its classifier, randomly initialised from ``seed``."""
    if not timm.is_model(name):
        raise CondPretrainError(f"{OPTION}: timm has no model {name!r} (see "
                                "timm.list_models('*pattern*'))")
    # Random weights must not depend on what ran before: a seeded, private RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return timm.create_model(name, pretrained=False, num_classes=0)


def cached_weights(model: nn.Module, cache_dir: str | Path | None = None) -> Path | None:
    """The model's pretrained file when it is already in the Hugging Face cache, else None.
    Looked up offline: a selection never downloads weights behind the user's back."""
    hub_id = _pretrained_cfg(model).get("hf_hub_id")
    if not hub_id:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # timm without the hub client: nothing can be cached
        return None
    for filename in HUB_FILES:
        found = try_to_load_from_cache(hub_id, filename, cache_dir=cache_dir)
        if isinstance(found, str):  # not a path: not cached, or cached as missing
            return Path(found)
    return None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors in ``path``, read as data: safetensors, or torch.load(weights_only)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state: Any = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise CondPretrainError(f"{OPTION}: cannot read weights {path} "
                                f"({type(exc).__name__})") from None
    for wrapper in ("state_dict", "model"):  # training checkpoints nest the weights
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise CondPretrainError(f"{OPTION}: {path} holds no state_dict of tensors")
    return {key.removeprefix("module."): value for key, value in state.items()}


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Every weight of the headless model from ``state``; the file's head, if any, is left
    out. A missing or misshapen weight is an error: half-random features would pass unseen."""
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches: another model's weights
        first = str(exc).strip().splitlines()[-1].strip()
        raise CondPretrainError(f"{OPTION}: {path} does not fit this model: {first}") from None
    if result.missing_keys:
        raise CondPretrainError(f"{OPTION}: {path} lacks {len(result.missing_keys)} weights "
                                f"of the model, e.g. {result.missing_keys[0]!r}")
    if result.unexpected_keys:
        log.info("%s: %d entries of %s not used (the classifier): %s", OPTION,
                 len(result.unexpected_keys), path, ", ".join(result.unexpected_keys[:4]))


class ModelInput(nn.Module):
    """Converts ImageNet-normalised images to the model's own statistics and, for models
    with a fixed input size, to that size; then runs the model."""

    def __init__(self, model: nn.Module, resolution: int) -> None:
        super().__init__()
        self.model = model
        config = _pretrained_cfg(model)
        mean = torch.tensor(config.get("mean", IMAGENET_MEAN), dtype=torch.float32)
        std = torch.tensor(config.get("std", IMAGENET_STD), dtype=torch.float32)
        given_mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)
        given_std = torch.tensor(IMAGENET_STD, dtype=torch.float32)
        # x_model = (x * given_std + given_mean - mean) / std, folded into one affine map.
        self.register_buffer("scale", (given_std / std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", ((given_mean - mean) / std).view(1, 3, 1, 1),
                             persistent=False)
        size = tuple(config.get("input_size", (3, resolution, resolution))[-2:])
        self.size = size if config.get("fixed_input_size") else None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.size is not None and tuple(images.shape[-2:]) != self.size:
            images = nn.functional.interpolate(images, size=self.size, mode="bilinear",
                                               align_corners=False, antialias=True)
        return self.model(images * self.scale + self.shift)


def _pretrained_cfg(model: nn.Module) -> dict[str, Any]:
    config = getattr(model, "pretrained_cfg", None) or {}
    return config if isinstance(config, dict) else dict(config)


__all__ = ["ModelInput", "TimmFeatures", "cached_weights", "create_headless", "import_timm",
           "load_weights", "parse_timm_spec", "read_state_dict"]
