"""Train an image classifier on an :class:`ImageDataset` (or any (x, y, idx, err) data).

Used wherever the tool needs a model of its own before it can score: the domain
classifier (pool vs target) and the target-trained model shared by clustering and
active learning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from condpretrain.device import prepare_model, to_device
from condpretrain.train.loop import EpochMetrics, Trainer


@dataclass
class ClassifierTask:
    """Cross-entropy on the good samples of a batch (bad files are masked out)."""

    model: nn.Module

    def training_step(self, batch, device: torch.device) -> tuple[torch.Tensor, int]:
        images, labels, _, errors = batch
        keep = torch.tensor([not e for e in errors], dtype=torch.bool)
        images, labels = to_device(images[keep], device), labels[keep].to(device)
        if len(labels) == 0:  # a batch of only broken files: a zero loss keeps the graph
            return sum(p.sum() * 0 for p in self.model.parameters()), 0
        return nn.functional.cross_entropy(self.model(images), labels), len(labels)

    def after_step(self) -> None:
        pass


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
) -> tuple[nn.Module, list[EpochMetrics]]:
    """SGD with a cosine schedule; returns the trained model (in eval mode) and history."""
    model = prepare_model(model, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                                weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    generator = torch.Generator().manual_seed(seed)

    def loader_for_epoch(epoch: int) -> DataLoader:
        if sampler is not None and hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        return DataLoader(dataset, batch_size=batch_size, shuffle=sampler is None,
                          sampler=sampler, num_workers=workers, generator=generator,
                          pin_memory=device.type == "cuda", drop_last=False,
                          persistent_workers=False)

    trainer = Trainer(ClassifierTask(model), optimizer, scheduler, device, amp, desc=desc)
    history = trainer.fit(loader_for_epoch, epochs)
    return model.eval(), history
