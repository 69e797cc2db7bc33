"""Supervised (pre-)training task: cross-entropy on the good samples of a batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from condpretrain.device import autocast, kept_on_device
from condpretrain.train.data import good_samples, normalize
from condpretrain.train.metrics import StepOutput


@dataclass
class SupervisedTask:
    """Classifier on uint8 batches from ``train.data``; counts top-1 hits for the metrics."""

    model: nn.Module

    def training_step(self, batch, device: torch.device) -> StepOutput:
        images, labels, _, errors = batch
        keep = good_samples(errors)
        # Only broken files, or one good image BatchNorm cannot train on: a zero loss
        # keeps DDP's graph whole.
        if int(keep.sum()) < 2:
            return StepOutput(zero_loss(self.model), 0, 0)
        images = normalize(kept_on_device(images, keep, device), device)
        labels = kept_on_device(labels, keep, device)
        logits = self.model(images)
        correct = (logits.argmax(1) == labels).sum()
        return StepOutput(nn.functional.cross_entropy(logits, labels), len(labels), correct)


def zero_loss(model: nn.Module) -> torch.Tensor:
    """A loss of zero that still reaches every parameter, so DDP's all-reduce of the
    gradients happens on every rank (a batch of only broken files trains nothing)."""
    return sum(p.sum() * 0 for p in model.parameters())  # type: ignore[return-value]


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, amp: bool,
             topk: tuple[int, ...] = (1, 5)) -> tuple[dict[int, int], int, float]:
    """Hits at each k, images seen and summed loss over ``loader`` (this rank's share)."""
    model.eval()
    # Summed on the device and read once at the end: no batch waits for the last one.
    hits = {k: torch.zeros((), dtype=torch.long, device=device) for k in topk}
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
    for images, labels, _, errors in loader:
        keep = good_samples(errors)
        if not bool(keep.any()):
            continue
        images = normalize(kept_on_device(images, keep, device), device)
        labels = kept_on_device(labels, keep, device)
        with autocast(device, amp):
            logits = model(images).float()
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum")
        top = logits.topk(min(max(topk), logits.shape[1]), dim=1).indices
        for k in topk:
            hits[k] += (top[:, :k] == labels[:, None]).any(1).sum()
        seen += len(labels)
    return {k: int(v) for k, v in hits.items()}, seen, float(loss_sum)
