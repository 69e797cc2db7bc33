"""The target-trained classifier, trained once per (target, arch, schedule, seed).

Clustering and both active-learning methods need a model trained on the target's
labels. Training it is the expensive part of those methods, so it is cached on disk
under a key of everything that determines it, and every method (and every budget of
an experiment) reuses the same file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from condpretrain import atomic
from condpretrain.data.images import ImageDataset, train_transform
from condpretrain.data.sources import Target
from condpretrain.device import prepare_model, seed_everything
from condpretrain.errors import CondPretrainError
from condpretrain.log import get_logger
from condpretrain.models import ARCHS, build_resnet, clean_state_dict, load_backbone, read_backbone
from condpretrain.scoring.base import ScoringContext, map_images
from condpretrain.train.classifier import train_classifier

log = get_logger(__name__)


@dataclass
class TargetModel:
    model: nn.Module
    classes: list[str]
    path: Path


def target_model(target: Target, context: ScoringContext) -> TargetModel:
    """Load the cached target-trained classifier, or train and cache it."""
    config = context.config
    classes = target.train.classes
    path = context.cache_dir / f"target-model-{config.target_arch}-{_cache_key(target, context)}.pt"
    model = build_resnet(config.target_arch, num_classes=len(classes))
    if path.is_file():
        log.info("reusing target model %s", path)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
    else:
        seed_everything(config.seed)
        dataset = ImageDataset(target.train.paths, train_transform(config.filter_resolution),
                               labels=target.train.label_ids(classes),
                               max_pixels=config.max_image_pixels)
        model, history = train_classifier(
            model, dataset, epochs=config.target_epochs, lr=config.target_lr,
            batch_size=min(config.batch_size, len(dataset)), workers=config.workers,
            device=context.device, amp=config.amp, seed=config.seed, desc="target model",
        )
        state = {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                 "classes": classes, "final_loss": history[-1].loss if history else None}
        atomic.save_with(path, lambda handle: torch.save(state, handle))
    model = prepare_model(model, context.device).eval()
    context.models_used["target_model"] = {
        "arch": config.target_arch, "classes": len(classes), "epochs": config.target_epochs,
        "path": str(path), "test_top1": _test_accuracy(model, target, classes, context),
    }
    return TargetModel(model, classes, path)


def feature_extractor(target: Target, context: ScoringContext) -> nn.Module:
    """Penultimate-layer features: from ``--features-from`` if given, else the target model."""
    features_from = context.config.features_from
    if features_from:
        state = read_backbone(features_from, "--features-from")
        arch = infer_arch(state, features_from)
        model = load_backbone(build_resnet(arch), features_from, arch, "--features-from")
        context.models_used["features"] = {"from": str(features_from), "arch": arch}
    else:
        if not target.labelled:
            raise CondPretrainError(
                f"target {target.name!r} is unlabelled: give --features-from CKPT (e.g. a "
                "MoCo-v2 backbone) so clustering has features without a target-trained model"
            )
        model = target_model(target, context).model
        context.models_used["features"] = {"from": "target_model"}
    model.fc = nn.Identity()
    return prepare_model(model, context.device).eval()


def infer_arch(state: dict[str, torch.Tensor], path: str | Path) -> str:
    """The registered ResNet whose backbone keys and shapes match ``state`` exactly."""
    for arch in ARCHS:
        own = clean_state_dict(build_resnet(arch, num_classes=1).state_dict())
        if own.keys() == state.keys() and all(own[k].shape == state[k].shape for k in own):
            return arch
    raise CondPretrainError(
        f"--features-from: {path} matches none of the known ResNets ({', '.join(ARCHS)})"
    )


def _cache_key(target: Target, context: ScoringContext) -> str:
    config = context.config
    recipe = {
        "paths": target.train.paths, "labels": target.train.labels, "arch": config.target_arch,
        "epochs": config.target_epochs, "lr": config.target_lr, "seed": config.seed,
        "resolution": config.filter_resolution, "batch": config.batch_size,
    }
    return hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:16]


def _test_accuracy(
    model: nn.Module, target: Target, classes: list[str], context: ScoringContext
) -> float | None:
    """Top-1 on the target's test split: tells the user whether the model is any good."""
    if target.test is None or not target.test.labelled:
        return None
    logits = map_images(target.test, context, model, len(classes), desc="target model test")
    labels = target.test.label_ids(classes)
    readable = ~np.isnan(logits).any(axis=1)
    if not readable.any():
        return None
    return float((logits[readable].argmax(1) == labels[readable]).mean())
