"""MoCo-v2 (He et al. 2019; Chen et al. 2020), following the reference ``builder``.

A query encoder trained by back-prop, a key encoder that is its momentum average, and a
queue of past keys as negatives. Under DDP, keys are computed with shuffled batch norm
(the batch is shuffled across GPUs before the key encoder and unshuffled after), so a
query cannot cheat through the batch statistics it shares with its key.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from condpretrain.dist import concat_all_gather
from condpretrain.errors import CondPretrainError
from condpretrain.log import get_logger
from condpretrain.models import build_resnet
from condpretrain.train.data import good_samples, normalize
from condpretrain.train.metrics import StepOutput

log = get_logger(__name__)


def clamp_queue(requested: int, images: int, global_batch: int) -> int:
    """The queue length actually used: at most the number of images (otherwise an image
    is its own negative) and a multiple of the global batch (the queue is filled one
    global batch at a time). Warns when it had to change."""
    if images < global_batch:
        raise CondPretrainError(
            f"--batch-size: the subset has {images} images, fewer than the global batch "
            f"{global_batch}; MoCo drops incomplete batches, so lower --batch-size")
    queue = min(requested, images) // global_batch * global_batch
    if queue != requested:
        log.warning("MoCo queue clamped from %d to %d (subset of %d images, global batch %d)",
                    requested, queue, images, global_batch)
    return queue


class MoCo(nn.Module):
    def __init__(self, arch: str, dim: int = 128, queue: int = 65536, momentum: float = 0.999,
                 temperature: float = 0.2, mlp: bool = True) -> None:
        super().__init__()
        self.momentum, self.temperature = momentum, temperature
        self.encoder_q = build_resnet(arch, num_classes=dim)
        if mlp:  # MoCo-v2's 2-layer head: hidden fc + ReLU before the output fc
            hidden = self.encoder_q.fc.in_features
            self.encoder_q.fc = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(),
                                              self.encoder_q.fc)
        self.encoder_k = copy.deepcopy(self.encoder_q)
        for param in self.encoder_k.parameters():
            param.requires_grad = False
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("queue", nn.functional.normalize(
            torch.randn(dim, queue, generator=generator), dim=0))  # dim x K
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def _momentum_update(self) -> None:
        for q, k in zip(self.encoder_q.parameters(), self.encoder_k.parameters(), strict=True):
            k.mul_(self.momentum).add_(q.detach(), alpha=1.0 - self.momentum)

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        keys = concat_all_gather(keys)  # global batch x dim
        size = self.queue.shape[1]
        ptr = int(self.queue_ptr)
        # The queue is a multiple of the global batch (clamp_queue), so this never wraps.
        self.queue[:, ptr:ptr + keys.shape[0]] = keys.T.to(self.queue.dtype)
        self.queue_ptr[0] = (ptr + keys.shape[0]) % size

    @torch.no_grad()
    def _shuffled_keys(self, im_k: torch.Tensor) -> torch.Tensor:
        """Keys with batch norm over a shuffled cross-GPU batch (identity on one process)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return nn.functional.normalize(self.encoder_k(im_k), dim=1)
        local = im_k.shape[0]
        gathered = concat_all_gather(im_k)
        order = torch.randperm(gathered.shape[0], device=im_k.device)
        dist.broadcast(order, src=0)
        rank = dist.get_rank()
        mine = order.view(dist.get_world_size(), -1)[rank]
        keys = nn.functional.normalize(self.encoder_k(gathered[mine]), dim=1)
        all_keys = concat_all_gather(keys)
        restore = torch.argsort(order).view(dist.get_world_size(), -1)[rank]
        assert all_keys.shape[0] == local * dist.get_world_size()
        return all_keys[restore]

    def forward(self, im_q: torch.Tensor, im_k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N x (1+K)) with the positive first, and the all-zero targets."""
        q = nn.functional.normalize(self.encoder_q(im_q), dim=1)  # N x dim
        with torch.no_grad():
            self._momentum_update()
            k = self._shuffled_keys(im_k)  # N x dim
        positive = (q * k).sum(1, keepdim=True)  # N x 1
        negative = q @ self.queue.clone().detach().to(q.dtype)  # N x K
        logits = torch.cat([positive, negative], dim=1) / self.temperature
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        self._enqueue(k)
        return logits, labels


@dataclass
class MocoTask:
    """``model`` is the MoCo module (possibly DDP-wrapped); batches hold two views."""

    model: nn.Module

    def training_step(self, batch, device: torch.device) -> StepOutput:
        views, _, _, errors = batch
        # Broken files stay in (as zero images): MoCo needs equal batch sizes on every rank.
        used = int(good_samples(errors).sum())
        im_q = normalize(views[:, 0], device)
        im_k = normalize(views[:, 1], device)
        logits, labels = self.model(im_q, im_k)
        loss = nn.functional.cross_entropy(logits.float(), labels)
        correct = (logits.argmax(1) == 0).sum()  # instance-discrimination top-1
        return StepOutput(loss, used, correct)
