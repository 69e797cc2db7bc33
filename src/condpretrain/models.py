"""torchvision ResNets by name, and plain-state_dict backbone files.

A backbone file is exactly what ``torchvision.models.<arch>()`` loads with
``strict=False`` reporting only the ``fc`` keys missing: no ``module.`` /
``encoder_q.`` prefixes, no head. That is what practitioners ask for and what every
downstream tool can read.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet
from torchvision.models.resnet import BasicBlock, ResNet

from condpretrain import atomic
from condpretrain.errors import CondPretrainError

HEAD_PREFIX = "fc."
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "encoder_q.", "backbone.", "model.")


def resnet10(num_classes: int = 1000) -> ResNet:
    """One BasicBlock per stage: a torchvision ResNet small enough for CPU tests."""
    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=num_classes)


ARCHS: dict[str, Callable[..., ResNet]] = {
    "resnet10": resnet10,
    "resnet18": resnet.resnet18,
    "resnet34": resnet.resnet34,
    "resnet50": resnet.resnet50,
    "resnet101": resnet.resnet101,
    "resnet152": resnet.resnet152,
    "resnext50_32x4d": resnet.resnext50_32x4d,
    "wide_resnet50_2": resnet.wide_resnet50_2,
}


def build_resnet(arch: str, num_classes: int = 1000) -> ResNet:
    """A randomly initialised ResNet; weights are never downloaded."""
    if arch not in ARCHS:
        raise CondPretrainError(f"--arch: unknown architecture {arch!r} (known: {', '.join(ARCHS)})")
    return ARCHS[arch](num_classes=num_classes)


def clean_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip DDP/compile/MoCo wrapper prefixes and drop the classification head."""
    cleaned = {}
    for key, value in state.items():
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        if not key.startswith(HEAD_PREFIX):
            cleaned[key] = value.detach().cpu()
    return cleaned


def save_backbone(model: nn.Module, path: str | Path) -> None:
    state = clean_state_dict(model.state_dict())
    atomic.save_with(path, lambda handle: torch.save(state, handle))


def read_backbone(path: str | Path, option: str = "--init") -> dict[str, torch.Tensor]:
    """A backbone state_dict from our files, torchvision files or common wrappers."""
    path = Path(path)
    if not path.is_file():
        raise CondPretrainError(f"{option}: no such checkpoint file: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise CondPretrainError(f"{option}: {path} is not a readable PyTorch checkpoint ({exc})"
                                .splitlines()[0]) from None
    for key in ("state_dict", "model", "backbone"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CondPretrainError(f"{option}: {path} does not hold a state_dict of tensors")
    return clean_state_dict(obj)


def load_backbone(model: ResNet, path: str | Path, arch: str, option: str = "--init") -> ResNet:
    """Load backbone weights into ``model``; a mismatched arch is a one-line error."""
    state = read_backbone(path, option)
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(HEAD_PREFIX)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong_shape:
        problems = [f"{len(missing)} missing" if missing else "",
                    f"{len(unexpected)} unexpected" if unexpected else "",
                    f"{len(wrong_shape)} of another shape" if wrong_shape else ""]
        example = (wrong_shape or missing or unexpected)[0]
        raise CondPretrainError(
            f"{option}: {path} does not fit {arch} ({', '.join(p for p in problems if p)} "
            f"weights, e.g. {example!r}); pass the --arch it was trained with"
        )
    model.load_state_dict(state, strict=False)
    return model


@lru_cache(maxsize=64)
def flops_per_image(arch: str, resolution: int) -> int:
    """Forward FLOPs of one image, counted by torch's FlopCounterMode (x2 per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_resnet(arch).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, resolution, resolution))
    return int(counter.get_total_flops())
