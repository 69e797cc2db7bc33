"""Train an image classifier on an :class:`ImageDataset` (or any (x, y, idx, err) data).

Used wherever the tool needs a model of its own before it can score: the domain
classifier (pool vs target) and the target-trained model shared by clustering and
active learning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset, Sampler

from condpretrain.device import kept_on_device, prepare_model
from condpretrain.dist import DistContext, unwrap, wrap_ddp
from condpretrain.train.data import EpochLoader, SeededDataset, good_samples
from condpretrain.train.loop import Trainer
from condpretrain.train.metrics import Metrics, StepOutput
from condpretrain.train.supervised import zero_loss


@dataclass
class ClassifierTask:
    """Cross-entropy on the good samples of a batch (bad files are masked out)."""

    model: nn.Module

    def training_step(self, batch, device: torch.device) -> StepOutput:
        images, labels, _, errors = batch
        keep = good_samples(errors)
        images, labels = kept_on_device(images, keep, device), kept_on_device(labels, keep, device)
        if len(labels) < 2:  # only broken files, or one good image that BatchNorm cannot
            return StepOutput(zero_loss(self.model), 0)  # train on: a zero loss keeps the graph
        return StepOutput(nn.functional.cross_entropy(self.model(images), labels), len(labels))


def train_classifier(
    model: nn.Module,
    dataset: Dataset,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    workers: int,
    device: torch.device,
    amp: bool = True,
    sampler: Sampler | None = None,
    seed: int = 0,
    desc: str = "classifier",
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    dist_ctx: DistContext | None = None,
) -> tuple[nn.Module, list[Metrics]]:
    """SGD with a cosine schedule; returns the trained model (in eval mode) and history.

    Each epoch's order is ``sampler``'s (told the epoch through ``set_epoch``) or a
    shuffle seeded from ``(seed, epoch)``; each sample's augmentation is seeded from
    ``(seed, epoch, index)`` (:class:`SeededDataset`, unless ``dataset`` seeds itself), so
    the model does not depend on the number of loader workers. Under torchrun (``dist_ctx`` enabled) the model
    is wrapped in DDP and each rank trains on its share of that order; ``batch_size`` is
    per rank.
    """
    ctx = dist_ctx or DistContext()
    if not hasattr(dataset, "epoch"):  # transforms drawing from torch's global RNG
        dataset = SeededDataset(dataset, seed)
    model = prepare_model(model, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                                weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))

    loader_for_epoch = EpochLoader(dataset, batch_size=batch_size, workers=workers, seed=seed,
                                   rank=ctx.rank, world=ctx.world_size, shuffle=True,
                                   drop_last=False, pin=device.type == "cuda", sampler=sampler)

    trainer = Trainer(ClassifierTask(wrap_ddp(model, device, ctx)), optimizer, scheduler, device,
                      amp, desc=desc, dist_ctx=ctx)
    history = trainer.fit(loader_for_epoch, epochs)
    return unwrap(model).eval(), history
