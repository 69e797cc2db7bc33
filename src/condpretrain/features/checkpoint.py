"""``checkpoint``: a backbone state_dict file given as ``--features-from CKPT``.

For features that need no target labels (e.g. a MoCo-v2 backbone, so clustering works
on an unlabelled target). The file holds no architecture name, so it is inferred from
the weights themselves.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.models.resnet import ResNet

from condpretrain.data.sources import Target
from condpretrain.errors import CondPretrainError
from condpretrain.features.base import FEATURES, FeatureContext, FeatureSource
from condpretrain.models import ARCHS, build_resnet, clean_state_dict, read_backbone

OPTION = "--features-from"


@FEATURES.register
class CheckpointFeatures(FeatureSource):
    name = "checkpoint"
    summary = "a backbone state_dict file (--features-from CKPT); architecture read off its weights"
    order = 1

    def network(self, target: Target | None, context: FeatureContext) -> ResNet:
        path = context.config.features_from
        state = read_backbone(path, OPTION)
        arch = infer_arch(state, path)
        model = build_resnet(arch)
        # infer_arch matched every backbone key and shape: only the head (fc) is missing.
        model.load_state_dict(state, strict=False)
        context.models_used["features"] = {"from": str(path), "arch": arch}
        return model


def infer_arch(state: dict[str, torch.Tensor], path: str | Path) -> str:
    """The registered ResNet whose backbone keys and shapes match ``state`` exactly."""
    for arch in ARCHS:
        own = clean_state_dict(build_resnet(arch, num_classes=1).state_dict())
        if own.keys() == state.keys() and all(own[k].shape == state[k].shape for k in own):
            return arch
    raise CondPretrainError(
        f"{OPTION}: {path} matches none of the known ResNets ({', '.join(ARCHS)})"
    )
