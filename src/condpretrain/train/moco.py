"""MoCo-v2 (He et al. 2019; Chen et al. 2020), following the reference ``builder``.

A query encoder trained by back-prop, a key encoder that is its momentum average, and a
queue of past keys as negatives. A query must not find its key through batch-norm
statistics the two share, so each key is computed in other company than its query:

* under DDP, the batch is shuffled across GPUs before the key encoder and unshuffled
  after (the reference's shuffle-BN; each GPU's BN sees its own part of the batch);
* on one process, both encoders compute BN statistics per sub-batch
  (:class:`SplitBatchNorm2d`, ``--moco-bn-splits``, as the MoCo authors' single-GPU
  notebook) and the key batch is shuffled before the key encoder, so a key's sub-batch
  holds other images than its query's. Sub-batches alone would not do: a query and its
  key would still sit among views of the same images.

The contrast itself (normalised features, logits, loss) is computed in float32 whatever
the autocast dtype: in bf16, cosines near 1 divided by a temperature of 0.2 round to
steps of ~0.02.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from condpretrain.device import to_device
from condpretrain.dist import concat_all_gather
from condpretrain.errors import CondPretrainError
from condpretrain.log import get_logger
from condpretrain.models import build_resnet
from condpretrain.train import photometric
from condpretrain.train.data import good_samples, normalize
from condpretrain.train.metrics import StepOutput

log = get_logger(__name__)


class SplitBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of ``splits`` equal sub-batches
    (sub-batch j: samples j*m .. (j+1)*m - 1 for a batch of ``splits`` x m), as ``splits``
    GPUs of m images each would compute them. The running statistics are the mean of the
    sub-batches' updates; evaluation uses them like any BatchNorm2d, and the state_dict
    is a BatchNorm2d's (a backbone file stays a plain torchvision one)."""

    def __init__(self, num_features: int, splits: int, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        self.splits = splits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.splits == 1 or not self.track_running_stats:
            return super().forward(x)
        if x.shape[0] % self.splits:
            raise ValueError(f"a batch of {x.shape[0]} does not split into {self.splits}")
        self.num_batches_tracked.add_(1)
        factor = (self.momentum if self.momentum is not None
                  else 1.0 / float(self.num_batches_tracked))
        outs, means, variances = [], [], []
        # Contiguous chunks are views in either memory format (channels_last included).
        for chunk in x.chunk(self.splits):
            mean, var = self.running_mean.clone(), self.running_var.clone()
            outs.append(nn.functional.batch_norm(chunk, mean, var, self.weight, self.bias,
                                                 True, factor, self.eps))
            means.append(mean)
            variances.append(var)
        with torch.no_grad():
            self.running_mean.copy_(torch.stack(means).mean(0))
            self.running_var.copy_(torch.stack(variances).mean(0))
        return torch.cat(outs)


def split_batch_norm(module: nn.Module, splits: int) -> nn.Module:
    """``module`` with every BatchNorm2d replaced by a :class:`SplitBatchNorm2d` holding
    its state (in place where it can; the module itself when it is one)."""
    if type(module) is nn.BatchNorm2d:
        split = SplitBatchNorm2d(module.num_features, splits, eps=module.eps,
                                 momentum=module.momentum, affine=module.affine,
                                 track_running_stats=module.track_running_stats)
        split.load_state_dict(module.state_dict())
        split.train(module.training)
        return split
    for name, child in module.named_children():
        setattr(module, name, split_batch_norm(child, splits))
    return module


def bn_splits_for(requested: int, batch: int) -> int:
    """The most sub-batches, up to ``requested``, that divide the per-process ``batch``
    into equal sub-batches of two images or more (BatchNorm needs two values per channel
    where the feature map is 1 x 1). Warns when it had to change."""
    splits = max((s for s in range(1, requested + 1) if batch % s == 0 and batch // s >= 2),
                 default=1)
    if splits != requested:
        log.warning("--moco-bn-splits lowered from %d to %d (a batch of %d per process)",
                    requested, splits, batch)
    return splits


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
                 temperature: float = 0.2, mlp: bool = True, bn_splits: int = 1,
                 seed: int = 0) -> None:
        super().__init__()
        self.momentum, self.temperature = momentum, temperature
        self.bn_splits, self.seed = bn_splits, seed
        self.encoder_q = build_resnet(arch, num_classes=dim)
        if mlp:  # MoCo-v2's 2-layer head: hidden fc + ReLU before the output fc
            hidden = self.encoder_q.fc.in_features
            self.encoder_q.fc = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(),
                                              self.encoder_q.fc)
        if bn_splits > 1:  # both encoders, as the authors' single-GPU notebook
            split_batch_norm(self.encoder_q, bn_splits)
        self.encoder_k = copy.deepcopy(self.encoder_q)
        for param in self.encoder_k.parameters():
            param.requires_grad = False
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("queue", nn.functional.normalize(
            torch.randn(dim, queue, generator=generator), dim=0))  # dim x K
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        # Steps taken, which seed the key shuffle: a buffer, so a resumed run draws the
        # same shuffles as an uninterrupted one.
        self.register_buffer("key_steps", torch.zeros(1, dtype=torch.long))
        self._host_counts: list[int] | None = None  # see _counts
        self.register_load_state_dict_post_hook(MoCo._forget_counts)

    def _counts(self) -> list[int]:
        """``[key_steps, queue_ptr]`` mirrored on the host: read from the buffers once
        (after construction or a load), then kept in step with them, so no training step
        waits for the device to read a counter back."""
        if self._host_counts is None:
            self._host_counts = [int(self.key_steps), int(self.queue_ptr)]
        return self._host_counts

    @staticmethod
    def _forget_counts(module: MoCo, _incompatible_keys: Any) -> None:
        module._host_counts = None

    @torch.no_grad()
    def _momentum_update(self) -> None:
        for q, k in zip(self.encoder_q.parameters(), self.encoder_k.parameters(), strict=True):
            # Not add_(q, alpha=...): torch 2.11's compiler splits that into a mul and an
            # add that round differently from the eager kernel (compiled and eager drift).
            k.mul_(self.momentum).add_(q.detach() * (1.0 - self.momentum))

    # The two counters' steps run eagerly under --compile: a host integer that changes
    # every step would otherwise make torch.compile recompile every step.
    @torch.compiler.disable
    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        keys = concat_all_gather(keys)  # global batch x dim
        counts = self._counts()
        ptr = counts[1]
        # The queue is a multiple of the global batch (clamp_queue), so this never wraps.
        self.queue[:, ptr:ptr + keys.shape[0]] = keys.T.to(self.queue.dtype)
        counts[1] = (ptr + keys.shape[0]) % self.queue.shape[1]
        self.queue_ptr.fill_(counts[1])

    @torch.compiler.disable
    def _negatives(self) -> torch.Tensor:
        """This step's negatives: a copy of the queue, made outside any compiled graph.
        The backward pass reads them after ``_enqueue`` has written the queue in place;
        under --compile (inductor) a copy made inside the graph was elided and the
        backward found its saved tensor modified (a crash at the first step)."""
        return self.queue.clone()

    @torch.compiler.disable
    def _key_order(self, size: int, device: torch.device) -> torch.Tensor:
        """A permutation of ``size``, the same on every rank: drawn from the seed and the
        step count rather than the global RNG; copied from pinned memory, so the host
        does not wait for the device."""
        counts = self._counts()
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + counts[0])
        counts[0] += 1
        self.key_steps.fill_(counts[0])
        order = torch.randperm(size, generator=generator)
        if device.type == "cuda":
            order = order.pin_memory()
        return order.to(device, non_blocking=True)

    @torch.no_grad()
    def _shuffled_keys(self, im_k: torch.Tensor) -> torch.Tensor:
        """Key features (N x dim, not normalised), each computed away from its query's BN
        company: shuffled across GPUs under DDP, into other sub-batches on one process."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            if self.bn_splits == 1:  # one BN over the whole batch: a shuffle changes nothing
                return self.encoder_k(im_k)
            order = self._key_order(im_k.shape[0], im_k.device)
            return self.encoder_k(im_k[order])[torch.argsort(order)]
        local = im_k.shape[0]
        gathered = concat_all_gather(im_k)
        order = self._key_order(gathered.shape[0], im_k.device)
        dist.broadcast(order, src=0)
        rank = dist.get_rank()
        mine = order.view(dist.get_world_size(), -1)[rank]
        all_keys = concat_all_gather(self.encoder_k(gathered[mine]))
        restore = torch.argsort(order).view(dist.get_world_size(), -1)[rank]
        assert all_keys.shape[0] == local * dist.get_world_size()
        return all_keys[restore]

    def forward(self, im_q: torch.Tensor, im_k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N x (1+K), float32) with the positive first, and the all-zero targets."""
        features = self.encoder_q(im_q)  # N x dim, in the autocast dtype
        with torch.no_grad():
            self._momentum_update()
            keys = self._shuffled_keys(im_k)  # N x dim
        with torch.autocast(features.device.type, enabled=False):
            q = nn.functional.normalize(features.float(), dim=1)
            k = nn.functional.normalize(keys.float(), dim=1)
            positive = (q * k).sum(1, keepdim=True)  # N x 1
            negative = q @ self._negatives().float()  # N x K
            logits = torch.cat([positive, negative], dim=1) / self.temperature
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        self._enqueue(k)
        return logits, labels


@dataclass
class MocoTask:
    """``model`` is the MoCo module (possibly DDP-wrapped); batches hold two views. With
    ``colour_on_device`` (the blur's kernel size), a batch's views come with their colour
    parameters, applied here by ``colour`` (``--moco-augment-on device``; compiled with
    ``--compile``, which fuses its many elementwise passes)."""

    model: nn.Module
    colour_on_device: int | None = None
    colour: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor] = photometric.apply

    def training_step(self, batch, device: torch.device) -> StepOutput:
        views, _, _, errors = batch
        # Broken files stay in (as zero images): MoCo needs equal batch sizes on every rank.
        used = int(good_samples(errors).sum())
        if self.colour_on_device is None:
            views = to_device(views, device)  # whole, from pinned memory: views are slices
            im_q, im_k = normalize(views[:, 0], device), normalize(views[:, 1], device)
        else:
            im_q, im_k = self._coloured(*views, device)
        logits, labels = self.model(im_q, im_k)
        with torch.autocast(logits.device.type, enabled=False):  # float32, as the logits
            loss = nn.functional.cross_entropy(logits.float(), labels)
        correct = (logits.argmax(1) == 0).sum()  # instance-discrimination top-1
        return StepOutput(loss, used, correct)

    def _coloured(self, views: torch.Tensor, params: torch.Tensor, device: torch.device
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """Query and key, their colour steps applied on ``device``, normalised."""
        views, params = views.to(device, non_blocking=True), params.to(device, non_blocking=True)
        batch, count, channels, height, width = views.shape
        coloured = self.colour(views.flatten(0, 1).float() / 255, params.flatten(0, 1),
                               self.colour_on_device)
        coloured = (coloured * 255).view(batch, count, channels, height, width)
        return normalize(coloured[:, 0], device), normalize(coloured[:, 1], device)
