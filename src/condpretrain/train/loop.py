"""The one training loop: epochs, AMP, progress, per-epoch metrics, checkpoints, resume, DDP.

What differs between kinds of training (a classifier, MoCo, a fine-tune) lives in a
:class:`TrainTask`: it owns the model and turns one batch into a loss. The loop owns
everything else, so every kind of training gets the same speed and bookkeeping.

Resumability: the loop tracks a :class:`Position` (epoch, batches done in it, running
sums). ``loader_for_epoch(epoch, skip)`` must yield the epoch's batches from batch
``skip`` on, in the same order as an uninterrupted epoch (see ``train.data``), so a run
restored from a mid-epoch checkpoint sees exactly the batches it would have seen.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from condpretrain.device import autocast
from condpretrain.log import get_logger, progress_bar
from condpretrain.train.dist import DistContext, all_reduce_sum, broadcast_flag

log = get_logger(__name__)


class TrainTask(Protocol):
    model: nn.Module

    def training_step(self, batch: Any, device: torch.device) -> tuple:
        """``(loss, images used)`` or ``(loss, images used, correct predictions)``."""

    def after_step(self) -> None:
        """Hook after each optimizer step."""


@dataclass
class EpochMetrics:
    epoch: int
    loss: float
    lr: float
    images: int
    seconds: float
    correct: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        return self.images / max(self.seconds, 1e-9)

    @property
    def accuracy(self) -> float | None:
        return None if self.correct is None else self.correct / max(self.images, 1)

    def as_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"epoch": self.epoch, "loss": self.loss, "lr": self.lr,
                               "images": self.images, "seconds": round(self.seconds, 3),
                               "images_per_s": round(self.images_per_second, 2)}
        if self.accuracy is not None:
            row["train_accuracy"] = round(self.accuracy, 6)
        row.update(self.extra)
        return row


@dataclass
class Position:
    """Where a run stands: ``step`` batches of ``epoch`` done, with their running sums."""

    epoch: int = 0
    step: int = 0
    loss_sum: float = 0.0
    images: int = 0
    correct: int = 0
    seconds: float = 0.0


class Trainer:
    def __init__(
        self,
        task: TrainTask,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        device: torch.device,
        amp: bool = True,
        desc: str = "train",
        dist_ctx: DistContext | None = None,
    ) -> None:
        self.task = task
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.device = device
        self.amp = amp
        self.desc = desc
        self.dist = dist_ctx or DistContext()
        # fp16 needs loss scaling; bf16 (chosen where supported) and fp32 do not.
        use_scaler = (amp and device.type == "cuda" and not torch.cuda.is_bf16_supported())
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)

    # -- state for checkpoints -------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"model": self.task.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.task.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    # -- the loop -----------------------------------------------------------------------------
    def fit(
        self,
        loader_for_epoch: Callable[[int], Iterable[Any]],
        epochs: int,
        on_epoch_end: Callable[[EpochMetrics], None] | None = None,
        start_epoch: int = 0,
    ) -> list[EpochMetrics]:
        """The simple entry point: whole epochs, no checkpoints (used by the scorers)."""
        return self.run(lambda epoch, skip: loader_for_epoch(epoch), epochs,
                        on_epoch_end=on_epoch_end, position=Position(start_epoch))

    def run(
        self,
        loader_for_epoch: Callable[[int, int], Iterable[Any]],
        epochs: int,
        *,
        on_epoch_end: Callable[[EpochMetrics], dict[str, Any] | None] | None = None,
        position: Position | None = None,
        checkpoint: Callable[[Position], None] | None = None,
        checkpoint_seconds: float | None = None,
    ) -> list[EpochMetrics]:
        """Train from ``position`` to ``epochs``.

        ``on_epoch_end`` may return extra metrics (e.g. test accuracy) for the epoch's
        line. ``checkpoint(position)`` is called after every epoch and, mid-epoch, every
        ``checkpoint_seconds`` (0: after every batch; None: only at epoch ends).
        """
        pos = dataclasses.replace(position) if position else Position()
        history = []
        last_save = time.monotonic()
        while pos.epoch < epochs:
            epoch = pos.epoch
            self.task.model.train()
            lr = self.optimizer.param_groups[0]["lr"]
            loader = loader_for_epoch(epoch, pos.step)
            started = time.perf_counter() - pos.seconds
            total = pos.step + len(loader) if hasattr(loader, "__len__") else None
            with progress_bar(total, desc=f"{self.desc} {epoch + 1}/{epochs}", unit="batch",
                              initial=pos.step) as bar:
                for batch in loader:
                    loss, used, correct = self.train_step(batch)
                    pos.step += 1
                    pos.loss_sum += loss * used
                    pos.images += used
                    pos.correct += correct
                    elapsed = time.perf_counter() - started
                    bar.set_postfix(loss=f"{pos.loss_sum / max(pos.images, 1):.3f}",
                                    img_s=f"{pos.images / max(elapsed, 1e-9):.0f}")
                    bar.update(1)
                    if checkpoint is not None and checkpoint_seconds is not None:
                        due = time.monotonic() - last_save >= checkpoint_seconds
                        if broadcast_flag(due, self.device, self.dist):
                            pos.seconds = elapsed
                            checkpoint(self._global_position(pos))
                            last_save = time.monotonic()
            loss_sum, images, correct = all_reduce_sum(
                [pos.loss_sum, pos.images, pos.correct], self.device, self.dist)
            if self.scheduler is not None:
                self.scheduler.step()
            metrics = EpochMetrics(epoch, loss_sum / max(images, 1), lr, int(images),
                                   time.perf_counter() - started,
                                   int(correct) if self._counts_correct else None)
            extra = on_epoch_end(metrics) if on_epoch_end is not None else None
            metrics.extra.update(extra or {})
            history.append(metrics)
            log.info("%s epoch %d/%d loss %.4f lr %.3g %.1f img/s", self.desc, epoch + 1,
                     epochs, metrics.loss, metrics.lr, metrics.images_per_second)
            pos = Position(epoch + 1)
            if checkpoint is not None:
                checkpoint(pos)
                last_save = time.monotonic()
        return history

    def train_step(self, batch: Any) -> tuple[float, int, int]:
        """One optimizer step; returns (mean loss, images used, correct predictions)."""
        with autocast(self.device, self.amp):
            out = self.task.training_step(batch, self.device)
        loss, used = out[0], out[1]
        correct = out[2] if len(out) > 2 else None
        self._counts_correct = correct is not None
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.task.after_step()
        return float(loss.detach()), int(used), int(correct or 0)

    _counts_correct: bool = False

    def _global_position(self, pos: Position) -> Position:
        """Running sums of all ranks (all ranks call this together); rank 0 keeps them,
        the others restart from zero, so the sums add up again after a resume."""
        loss_sum, images, correct = all_reduce_sum([pos.loss_sum, pos.images, pos.correct],
                                                   self.device, self.dist)
        return dataclasses.replace(pos, loss_sum=loss_sum, images=int(images),
                                   correct=int(correct))


def restore_position(state: Position | dict[str, Any] | None, rank: int) -> Position:
    """A checkpoint's position for this rank (running sums only on rank 0)."""
    if state is None:
        return Position()
    pos = Position(**state) if isinstance(state, dict) else dataclasses.replace(state)
    if rank != 0:
        pos.loss_sum, pos.images, pos.correct = 0.0, 0, 0
    return pos
