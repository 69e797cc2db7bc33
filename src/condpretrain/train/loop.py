"""The one training loop: epochs, AMP, channels_last, progress, per-epoch metrics.

What differs between kinds of training (a classifier, MoCo, a fine-tune) lives in a
:class:`TrainTask`: it owns the model and turns one batch into a loss. The loop owns
everything else, so every kind of training gets the same speed and bookkeeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from condpretrain.device import autocast
from condpretrain.log import get_logger, progress_bar

log = get_logger(__name__)


class TrainTask(Protocol):
    model: nn.Module

    def training_step(self, batch: Any, device: torch.device) -> tuple[torch.Tensor, int]:
        """Loss of one batch and the number of images it used."""

    def after_step(self) -> None:
        """Hook after each optimizer step (e.g. MoCo's key-encoder momentum update)."""


@dataclass
class EpochMetrics:
    epoch: int
    loss: float
    lr: float
    images: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / max(self.seconds, 1e-9)

    def as_dict(self) -> dict[str, float | int]:
        return {"epoch": self.epoch, "loss": self.loss, "lr": self.lr, "images": self.images,
                "seconds": round(self.seconds, 3),
                "images_per_s": round(self.images_per_second, 2)}


class Trainer:
    def __init__(
        self,
        task: TrainTask,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        device: torch.device,
        amp: bool = True,
        desc: str = "train",
    ) -> None:
        self.task = task
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.device = device
        self.amp = amp
        self.desc = desc
        # fp16 needs loss scaling; bf16 (chosen where supported) and fp32 do not.
        use_scaler = (amp and device.type == "cuda" and not torch.cuda.is_bf16_supported())
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)

    def fit(
        self,
        loader_for_epoch: Callable[[int], Iterable[Any]],
        epochs: int,
        on_epoch_end: Callable[[EpochMetrics], None] | None = None,
        start_epoch: int = 0,
    ) -> list[EpochMetrics]:
        history = []
        for epoch in range(start_epoch, epochs):
            metrics = self.train_epoch(loader_for_epoch(epoch), epoch, epochs)
            history.append(metrics)
            log.info("%s epoch %d/%d loss %.4f lr %.3g %.1f img/s", self.desc, epoch + 1, epochs,
                     metrics.loss, metrics.lr, metrics.images_per_second)
            if on_epoch_end is not None:
                on_epoch_end(metrics)
        return history

    def train_epoch(self, loader: Iterable[Any], epoch: int, epochs: int) -> EpochMetrics:
        model = self.task.model
        model.train()
        lr = self.optimizer.param_groups[0]["lr"]
        total_loss, images, started = 0.0, 0, time.perf_counter()
        total = len(loader) if hasattr(loader, "__len__") else None
        with progress_bar(total, desc=f"{self.desc} {epoch + 1}/{epochs}", unit="batch") as bar:
            for batch in loader:
                with autocast(self.device, self.amp):
                    loss, used = self.task.training_step(batch, self.device)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.task.after_step()
                total_loss += float(loss.detach()) * used
                images += used
                bar.set_postfix(loss=f"{total_loss / max(images, 1):.3f}")
                bar.update(1)
        if self.scheduler is not None:
            self.scheduler.step()
        return EpochMetrics(epoch, total_loss / max(images, 1), lr, images,
                            time.perf_counter() - started)
