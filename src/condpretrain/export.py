"""Backbone export: detectron2's pickle (as MoCo's ``convert-pretrain-to-detectron2``).

detectron2 names ResNet weights differently from torchvision: ``layerN`` is ``res{N+1}``,
``bnK`` is ``convK.norm``, the downsample branch is ``shortcut`` and the stem lives under
``stem.``. The pickle holds numpy arrays and ``matching_heuristics`` so detectron2's
loader maps the rest (e.g. a C4 head's ``res5``) by shape.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models import resnet

from condpretrain import atomic
from condpretrain.errors import CondPretrainError
from condpretrain.models import ARCHS, HEAD_PREFIX, read_backbone

FORMATS = ("detectron2", "torchvision")


def detectron2_name(key: str) -> str:
    """torchvision ResNet key -> detectron2 key (``conv1.weight`` -> ``stem.conv1.weight``)."""
    if "layer" not in key:
        key = "stem." + key
    for stage in (1, 2, 3, 4):
        key = key.replace(f"layer{stage}", f"res{stage + 1}")
    for conv in (1, 2, 3):
        key = key.replace(f"bn{conv}", f"conv{conv}.norm")
    key = key.replace("downsample.0", "shortcut")
    return key.replace("downsample.1", "shortcut.norm")


def to_detectron2(state: dict[str, torch.Tensor]) -> dict[str, object]:
    model = {detectron2_name(k): v.detach().cpu().numpy() for k, v in state.items()
             if not k.endswith("num_batches_tracked")}
    return {"model": model, "__author__": "condpretrain", "matching_heuristics": True}


def export_backbone(backbone: str | Path, out: str | Path, fmt: str = "detectron2") -> Path:
    """Write ``backbone`` (a backbone.pt, a run folder holding one, or a wrapped
    checkpoint) to ``out`` in ``fmt``."""
    if fmt not in FORMATS:
        raise CondPretrainError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    if out.is_dir():
        raise CondPretrainError(f"--out {out} is a folder; give a file name, e.g. "
                                f"{out / ('backbone.pkl' if fmt == 'detectron2' else 'backbone.pt')}")
    path = Path(backbone)
    if path.is_dir():
        path = path / "backbone.pt"
    state = read_backbone(path, option="--backbone")
    check_resnet(state, f"--backbone: {path}")
    if fmt == "detectron2":
        payload = to_detectron2(state)
        atomic.save_with(out, lambda handle: pickle.dump(payload, handle))
    else:
        atomic.save_with(out, lambda handle: torch.save(state, handle))
    return out


# What a detectron2 weights pickle may name: numpy arrays and their dtypes (each numpy
# module spelling and pickle protocol), and protocol 2's bytes helper. Nothing else is
# looked up, so a planted pickle cannot call anything.
_ARRAY_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
})


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ARRAY_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, not a numpy array")
        return super().find_class(module, name)


def check_resnet(state: dict[str, torch.Tensor], where: str) -> str:
    """The architecture ``state`` is the whole backbone of (same weights, same shapes):
    another framework cannot load a part of one, nor another network; else one line."""
    names = {k: tuple(v.shape) for k, v in state.items()}
    for arch in _known_archs():
        if _backbone_shapes(arch) == names:
            return arch
    raise CondPretrainError(f"{where} is not the backbone of a torchvision ResNet "
                            f"({len(state)} weights, matching none of {', '.join(ARCHS)} "
                            "and torchvision's other ResNets)")


def _known_archs() -> dict[str, Callable[..., nn.Module]]:
    """Ours and every ResNet torchvision builds (ResNeXt-101, Wide ResNet-101 too)."""
    others = {name: getattr(resnet, name) for name in resnet.__all__ if name[0].islower()}
    return {**ARCHS, **others}


@cache
def _backbone_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):  # shapes only: nothing allocated or initialised
        model = _known_archs()[arch]()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()
            if not k.startswith(HEAD_PREFIX)}


def load_detectron2(path: str | Path) -> dict[str, np.ndarray]:
    """Read back an exported pickle's weights (for checks), safely: only dicts, numbers,
    strings and numeric numpy arrays are built (a restricted unpickler; nothing is
    called); anything else is a one-line error naming the file."""
    try:
        with open(path, "rb") as handle:
            payload = _ArrayUnpickler(handle).load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, KeyError,
            AttributeError, IndexError) as exc:
        raise CondPretrainError(f"{path} is not a detectron2 weights pickle that loads safely "
                                f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                                ) from None
    model = payload.get("model") if isinstance(payload, dict) else None
    if not isinstance(model, dict) or not all(
            isinstance(v, np.ndarray) and not v.dtype.hasobject for v in model.values()):
        raise CondPretrainError(f"{path} is not a detectron2 weights pickle (no 'model' dict "
                                "of numeric arrays)")
    return model
