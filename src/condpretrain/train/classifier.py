"""Train an image classifier on an :class:`ImageDataset` (or any (x, y, idx, err) data).

Used wherever the tool needs a model of its own before it can score: the domain
classifier (pool vs target) and the target-trained model shared by clustering and
active learning.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler

from condpretrain.device import prepare_model, to_device
from condpretrain.train.common import unwrap, wrap_ddp
from condpretrain.train.dist import DistContext
from condpretrain.train.loop import EpochMetrics, Trainer


class RankShard(Sampler[int]):
    """This rank's share of a sampler whose order every rank computes alike.

    Rank r takes positions r, r+W, ...; the order is padded by wrapping around so every
    rank gets the same number of samples (DDP hangs if one rank runs fewer batches).
    """

    def __init__(self, base: Sampler[int], ctx: DistContext) -> None:
        self.base, self.ctx = base, ctx

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return -(-len(self.base) // self.ctx.world_size)

    def __iter__(self) -> Iterator[int]:
        order = list(self.base)
        padded = order + order[: len(self) * self.ctx.world_size - len(order)]
        return iter(padded[self.ctx.rank :: self.ctx.world_size])


class _SeededRandomSampler(RandomSampler):
    """A shuffle that depends on (seed, epoch) alone, so all ranks draw the same one."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        super().__init__(dataset, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed * 1_000_003 + epoch)


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
    dist_ctx: DistContext | None = None,
) -> tuple[nn.Module, list[EpochMetrics]]:
    """SGD with a cosine schedule; returns the trained model (in eval mode) and history.

    Under torchrun (``dist_ctx`` enabled) the model is wrapped in DDP and each rank
    trains on its share of ``sampler`` (or of a seeded shuffle); ``batch_size`` is per rank.
    """
    ctx = dist_ctx or DistContext()
    model = prepare_model(model, device)
    if ctx.enabled:
        sampler = RankShard(sampler or _SeededRandomSampler(dataset, seed), ctx)
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

    trainer = Trainer(ClassifierTask(wrap_ddp(model, device, ctx)), optimizer, scheduler, device,
                      amp, desc=desc, dist_ctx=ctx)
    history = trainer.fit(loader_for_epoch, epochs)
    return unwrap(model).eval(), history
