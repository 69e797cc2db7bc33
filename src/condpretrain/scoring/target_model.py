"""The target-trained classifier, trained once per (target, arch, schedule, seed).

Clustering and both active-learning methods need a model trained on the target's
labels. Training it is the expensive part of those methods, so it is cached on disk
under a key of everything that determines it, and every method (and every budget of
an experiment) reuses the same file. The file records what its training cost, which
every method that uses it is charged (see :mod:`~condpretrain.scoring.cost`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.utils.data import Sampler

from condpretrain import atomic
from condpretrain.config import SelectConfig, to_dict
from condpretrain.data.images import ImageDataset, train_transform
from condpretrain.data.sources import Target
from condpretrain.device import prepare_model, seed_everything
from condpretrain.dist import barrier
from condpretrain.errors import CondPretrainError
from condpretrain.log import get_logger
from condpretrain.models import build_resnet
from condpretrain.scoring.base import map_images
from condpretrain.train.batchnorm import recalibrate_batchnorm
from condpretrain.train.classifier import train_classifier
from condpretrain.train.data import SeededDataset, make_loader

if TYPE_CHECKING:  # the context hands out this module's model, so it imports us
    from condpretrain.scoring.context import ScoringContext

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
    recipe = {"paths": target.train.paths, "labels": target.train.labels}
    path = context.cache_dir / (
        f"target-model-{config.target_arch}-{recipe_key(recipe, config, 'target')}.pt")

    def train(model: nn.Module) -> tuple[nn.Module, dict]:
        dataset = ImageDataset(target.train.paths, train_transform(config.filter_resolution),
                               labels=target.train.label_ids(classes),
                               max_pixels=config.max_image_pixels)
        model, meta = fit_classifier(model, dataset, context, epochs=config.target_epochs,
                                     lr=config.target_lr, desc="target model")
        return model, {"classes": classes, **meta}

    model = trained_once(path, lambda: build_resnet(config.target_arch, len(classes)), train,
                         context)
    context.models_used["target_model"] = {
        "arch": config.target_arch, "classes": len(classes), "epochs": config.target_epochs,
        "path": str(path), "test_top1": _test_accuracy(model, target, classes, context),
    }
    return TargetModel(model, classes, path)


def fit_classifier(
    model: nn.Module,
    dataset: ImageDataset,
    context: ScoringContext,
    *,
    epochs: int,
    lr: float,
    desc: str,
    sampler: Sampler | None = None,
) -> tuple[nn.Module, dict]:
    """Train with the selection settings, then re-estimate BN statistics on the data."""
    config = context.config
    batch_size = min(config.batch_size, len(sampler) if sampler is not None else len(dataset))
    model, history = train_classifier(
        model, dataset, epochs=epochs, lr=lr, batch_size=batch_size, workers=config.workers,
        device=context.device, amp=config.amp, sampler=sampler, seed=config.seed, desc=desc,
        dist_ctx=context.dist,
    )
    # The pass sees the data as training did: augmented, each sample seeded from (seed,
    # epoch, index) with the epoch after the last, so it too is the same for any number
    # of workers. Every process makes the whole pass (rank 0's model is the one saved).
    loader = make_loader(SeededDataset(dataset, config.seed), batch_size=batch_size,
                         workers=config.workers, epoch=epochs, seed=config.seed, rank=0, world=1,
                         shuffle=True, drop_last=False, pin=False, sampler=sampler)
    recalibrate_batchnorm(model, loader, context.device, config.amp)
    return model, {"final_loss": history[-1].loss if history else None}


def trained_once(
    path: Path,
    build: Callable[[], nn.Module],
    train: Callable[[nn.Module], tuple[nn.Module, dict]],
    context: ScoringContext,
) -> nn.Module:
    """The model cached at ``path``, trained first if missing.

    Training a model is the costly part of a method, so it happens once: later methods,
    budgets and resumed runs load the file. Under torchrun every rank trains (DDP), rank
    0 saves, and every rank loads that file, so all score with identical weights.

    The file records what training took (wall seconds, processes), in the same atomic
    write as the weights, and every use charges it to the context: a method that loads
    the model needed it as much as the one that trained it.
    """
    trained_here = not path.is_file()
    if trained_here:
        started = time.perf_counter()
        seed_everything(context.config.seed)  # before building: the initial weights count
        trained, meta = train(build())
        cost = {"seconds": round(time.perf_counter() - started, 3),
                "processes": context.dist.world_size}
        if context.dist.is_main:
            state = {"state_dict": {k: v.cpu() for k, v in trained.state_dict().items()},
                     **meta, "cost": cost}
            atomic.save_with(path, lambda handle: torch.save(state, handle))
    else:
        log.info("reusing %s", path)
    barrier(context.dist)
    model = build()
    saved = _read_model(path, model)
    context.charge_shared(path, saved.get("cost"), trained_here)
    return prepare_model(model, context.device).eval()


def _read_model(path: Path, model: nn.Module) -> dict:
    """Load the cached file at ``path`` into ``model`` (``weights_only``: a file in a
    shared cache folder never runs code); a file that is not one is a one-line error."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["state_dict"])
    except Exception as exc:  # torch raises many types for a bad or foreign file
        raise CondPretrainError(
            f"{path} is not a model this tool cached ({type(exc).__name__}); delete it to "
            "train the model again") from None
    return saved


def recipe_key(recipe: dict, config: SelectConfig, prefix: str) -> str:
    """A short hash of everything that determines a trained model."""
    settings = {k: v for k, v in to_dict(config).items() if k.startswith(prefix)}
    settings.update(seed=config.seed, resolution=config.filter_resolution,
                    batch=config.batch_size, recipe=recipe)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


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
