"""Backbone export: detectron2's pickle (as MoCo's ``convert-pretrain-to-detectron2``).

detectron2 names ResNet weights differently from torchvision: ``layerN`` is ``res{N+1}``,
``bnK`` is ``convK.norm``, the downsample branch is ``shortcut`` and the stem lives under
``stem.``. The pickle holds numpy arrays and ``matching_heuristics`` so detectron2's
loader maps the rest (e.g. a C4 head's ``res5``) by shape.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from condpretrain import atomic
from condpretrain.errors import CondPretrainError
from condpretrain.models import read_backbone

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
    path = Path(backbone)
    if path.is_dir():
        path = path / "backbone.pt"
    state = read_backbone(path, option="--backbone")
    out = Path(out)
    if fmt == "detectron2":
        payload = to_detectron2(state)
        atomic.save_with(out, lambda handle: pickle.dump(payload, handle))
    else:
        atomic.save_with(out, lambda handle: torch.save(state, handle))
    return out


def load_detectron2(path: str | Path) -> dict[str, np.ndarray]:
    """Read back an exported pickle's weights (for checks)."""
    with open(path, "rb") as handle:
        return pickle.load(handle)["model"]
