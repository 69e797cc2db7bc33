"""torchvision ResNets by name, and plain-state_dict backbone files.

A backbone file is exactly what ``torchvision.models.<arch>()`` loads with
``strict=False`` reporting only the ``fc`` keys missing: no ``module.`` /
``encoder_q.`` prefixes, no head. That is what practitioners ask for and what every
downstream tool can read. Reading (``--init``, ``--features-from``) also accepts the
official MoCo release, torchvision / timm ResNet files and the usual self-supervised
libraries' layouts, and takes the online encoder out of them (:func:`extract_backbone`).
"""

from __future__ import annotations

import re
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
# Wrappers around the state_dict in a checkpoint file (Lightning, timm, ours), outermost first.
_CONTAINER_KEYS = ("state_dict", "model", "backbone")
# The modules of a torchvision (and timm) ResNet that hold weights: the first of them in
# a key is where the backbone's own name begins, and what precedes it a wrapper prefix.
_RESNET_PARTS = frozenset({"conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"})
# ``nn.Sequential(*resnet.children())``: child index -> torchvision name (2, 3: ReLU,
# max-pool; 8: avg-pool; no weights).
_SEQUENTIAL_CHILDREN = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3",
                        "7": "layer4"}
# Words of a prefix that mark a momentum / EMA copy: MoCo's ``encoder_k``, solo-learn's
# ``momentum_backbone``, lightly's ``backbone_momentum``, BYOL's and mmselfsup's target
# networks, teachers.
_MOMENTUM_WORDS = frozenset({"k", "key", "momentum", "target", "teacher", "ema"})
# Words naming the non-backbone parts self-supervised checkpoints carry.
_EXTRA_WORDS = frozenset({"queue", "ptr", "projector", "projection", "predictor", "prediction",
                          "classifier", "neck", "head", "mlp", "prototypes", "preprocessor"})


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
    """The backbone of a model's ``state_dict`` (wrapper prefixes stripped, no head)."""
    return extract_backbone(state, "state_dict")


def save_state_dict(model: nn.Module, path: str | Path) -> None:
    """``model``'s whole ``state_dict`` (on the CPU), atomically: what ``load_state_dict``
    of the same architecture reads back."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic.save_with(path, lambda handle: torch.save(state, handle))


def save_backbone(model: nn.Module, path: str | Path) -> None:
    state = clean_state_dict(model.state_dict())
    atomic.save_with(path, lambda handle: torch.save(state, handle))


def read_backbone(path: str | Path, option: str = "--init") -> dict[str, torch.Tensor]:
    """A backbone state_dict from our files, torchvision / timm ResNet files, the official
    MoCo release and the usual self-supervised layouts (:func:`extract_backbone`)."""
    path = Path(path)
    if not path.is_file():
        raise CondPretrainError(f"{option}: no such checkpoint file: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        # torch's own text is paragraphs with terminal escape codes: name the kind only
        reason = ("it names Python objects, not only tensors: not loaded, for safety"
                  if "Unsupported global" in str(exc) else type(exc).__name__)
        raise CondPretrainError(f"{option}: {path} is not a readable PyTorch checkpoint "
                                f"({reason})") from None
    for key in _CONTAINER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CondPretrainError(f"{option}: {path} does not hold a state_dict of tensors")
    return extract_backbone(obj, f"{option}: {path}")


def extract_backbone(state: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """The one ResNet backbone in ``state`` under torchvision's names, without its head.

    Keys are grouped by what precedes the first ResNet part (``conv1``, ``layer1``, ...):
    ``module.encoder_q.``, ``backbone.``, ``_orig_mod.`` or nothing. A group whose prefix
    names a momentum / EMA copy (MoCo's ``encoder_k``, ``momentum_backbone``, ``target_net``,
    a teacher) is used only when nothing else is there: the online encoder is the one
    trained by back-prop, and what the reference fine-tuning script keeps. Keys outside
    every group must be parts these layouts are known to carry (queues, projectors,
    predictors, necks, heads); anything else is a one-line error naming them.
    """
    if not state:
        raise CondPretrainError(f"{where} holds no weights")
    groups: dict[str, dict[str, torch.Tensor]] = {}
    others: list[str] = []
    for key, value in _name_sequential_children(state).items():
        split = _split_key(key)
        if split is None:
            others.append(key)
        else:
            groups.setdefault(split[0], {})[split[1]] = value
    # A group of head keys only (e.g. ``head.fc.weight``) is a head, not a backbone.
    bodies = {prefix: group for prefix, group in groups.items()
              if any(not k.startswith(HEAD_PREFIX) for k in group)}
    unexpected = [key for key in others if not _is_known_extra(key)]
    if unexpected or not bodies:
        raise CondPretrainError(f"{where} is not a ResNet backbone (unexpected keys "
                                f"{_few(unexpected or others or list(state))})")
    online = {p: g for p, g in bodies.items() if not _is_momentum(p)} or bodies
    chosen = _the_one(online, where)
    backbone = {k: v.detach().cpu() for k, v in chosen.items() if not k.startswith(HEAD_PREFIX)}
    return _with_batches_tracked(backbone)


def _split_key(key: str) -> tuple[str, str] | None:
    """(prefix, ResNet key) at the first ResNet part of ``key``; None when it has none."""
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        if part in _RESNET_PARTS:
            return "".join(p + "." for p in parts[:i]), ".".join(parts[i:])
    return None


def _name_sequential_children(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``nn.Sequential(*resnet.children())`` (lightly's examples: ``backbone.0.weight``,
    ``backbone.4.0.conv1.weight``) renamed to torchvision's names; others as they are."""
    prefixes = [key[:-len("0.weight")] for key, value in state.items()
                if (key == "0.weight" or key.endswith(".0.weight")) and value.dim() == 4]
    prefixes = [p for p in prefixes if f"{p}1.running_mean" in state
                and any(k.startswith(f"{p}4.0.") for k in state)]
    if not prefixes:
        return state
    renamed = {}
    for key, value in state.items():
        prefix = next((p for p in prefixes if key.startswith(p)), None)
        if prefix is not None:
            child, dot, rest = key[len(prefix):].partition(".")
            if child in _SEQUENTIAL_CHILDREN and dot:
                key = f"{prefix}{_SEQUENTIAL_CHILDREN[child]}.{rest}"
        renamed[key] = value
    return renamed


def _words(prefix: str) -> set[str]:
    return {word for part in prefix.lower().split(".") for word in re.split(r"[_\-]", part)}


def _is_momentum(prefix: str) -> bool:
    return bool(_words(prefix) & _MOMENTUM_WORDS)


def _is_known_extra(key: str) -> bool:
    return bool(_words(key) & (_EXTRA_WORDS | _MOMENTUM_WORDS))


def _the_one(groups: dict[str, dict[str, torch.Tensor]], where: str) -> dict[str, torch.Tensor]:
    """The backbone when every group holds the same one (a module registered twice, as
    mmselfsup 0.x's ``backbone`` and ``encoder_q.0``); several different ones are an error."""
    (first, chosen), *rest = groups.items()
    different = [p for p, g in rest if g.keys() != chosen.keys()
                 or not all(torch.equal(g[k], chosen[k]) for k in chosen)]
    if different:
        names = ", ".join(repr(p) for p in [first, *different][:3])
        raise CondPretrainError(f"{where} holds several different backbones (under {names})")
    return chosen


def _with_batches_tracked(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add the ``num_batches_tracked`` counters that older torchvision and timm files leave
    out (BatchNorm itself fills them in on loading such a file; zero, as it does)."""
    for key in [k for k in state if k.endswith(".running_mean")]:
        counter = key[:-len("running_mean")] + "num_batches_tracked"
        state.setdefault(counter, torch.tensor(0, dtype=torch.long))
    return state


def _few(keys: list[str], shown: int = 3) -> str:
    text = ", ".join(repr(k) for k in sorted(keys)[:shown])
    return text + (f" and {len(keys) - shown} more" if len(keys) > shown else "")


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
