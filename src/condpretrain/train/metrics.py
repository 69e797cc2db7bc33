"""What one training step reports, the running sums of a metrics line, and the line.

The sums stay on the device: reading a loss makes the host wait for the device, so it
happens once per line (or checkpoint), not once per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from condpretrain.dist import DistContext, all_reduce_sum


@dataclass
class StepOutput:
    """One batch's training loss, the images it used, and what the line reports besides:
    top-1 hits (None: the task does not count them) and named loss parts."""

    loss: torch.Tensor
    images: int
    correct: torch.Tensor | int | None = None
    parts: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class SavedSums:
    """A line's sums as a checkpoint keeps them (all ranks' on rank 0, zero elsewhere)."""

    loss_sum: float = 0.0
    images: int = 0
    correct: int = 0
    steps: int = 0
    seconds: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)
    counts_correct: bool = False


class LineSums:
    """Image-weighted sums of the loss (and its parts) and counts since the last line."""

    def __init__(self, device: torch.device, start: SavedSums | None = None) -> None:
        self.device = device
        self.dtype = torch.float32 if device.type == "mps" else torch.float64
        self.reset(start or SavedSums())

    def reset(self, start: SavedSums | None = None) -> None:
        start = start or SavedSums()
        self.loss = self._scalar(start.loss_sum)
        self.correct = self._scalar(start.correct)
        self.parts = {k: self._scalar(v) for k, v in start.parts.items()}
        self.images, self.steps = int(start.images), int(start.steps)
        self.counts_correct = start.counts_correct

    def _scalar(self, value: float) -> torch.Tensor:
        return torch.tensor(value, dtype=self.dtype, device=self.device)

    def add(self, out: StepOutput) -> None:
        weight = out.images
        self.loss += out.loss.detach().to(self.dtype) * weight
        for key, value in out.parts.items():
            part = value.detach().to(self.dtype) * weight
            self.parts[key] = self.parts[key] + part if key in self.parts else part
        if out.correct is not None:
            self.correct += out.correct
            self.counts_correct = True
        self.images += weight
        self.steps += 1

    def local_mean_loss(self) -> float:
        """This rank's mean loss so far (for the progress bar; waits for the device)."""
        return float(self.loss) / max(self.images, 1)

    def totals(self, ctx: DistContext) -> SavedSums:
        """The sums over all ranks (every rank must call this at the same point)."""
        keys = list(self.parts)  # the task's order, the same on every rank
        local = torch.stack([self.loss, self.correct.to(self.dtype),
                             *(self.parts[k] for k in keys)]).tolist()
        summed = all_reduce_sum([*local, self.images], self.device, ctx)
        return SavedSums(loss_sum=summed[0], correct=int(summed[1]), images=int(summed[-1]),
                         parts=dict(zip(keys, summed[2:-1], strict=True)), steps=self.steps,
                         counts_correct=self.counts_correct)


@dataclass
class Metrics:
    """One metrics line: an epoch's, or (``iteration`` set) a period of an
    iteration-based run's."""

    epoch: int | float
    loss: float
    lr: float
    images: int
    seconds: float
    steps: int = 0
    correct: int | None = None
    iteration: int | None = None
    parts: dict[str, float] = field(default_factory=dict)  # mean of each loss part
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, sums: SavedSums, *, epoch: int | float, lr: float, seconds: float,
           iteration: int | None = None) -> Metrics:
        images = max(sums.images, 1)
        return cls(epoch=epoch, loss=sums.loss_sum / images, lr=lr, images=sums.images,
                   seconds=seconds, steps=sums.steps,
                   correct=sums.correct if sums.counts_correct else None, iteration=iteration,
                   parts={k: v / images for k, v in sums.parts.items()})

    @property
    def images_per_second(self) -> float:
        return self.images / max(self.seconds, 1e-9)

    @property
    def accuracy(self) -> float | None:
        return None if self.correct is None else self.correct / max(self.images, 1)

    def as_dict(self) -> dict[str, Any]:
        """The ``metrics.jsonl`` line."""
        if self.iteration is not None:
            row: dict[str, Any] = {
                "epoch": self.epoch, "iteration": self.iteration, "loss": self.loss,
                "lr": self.lr, **self.parts, "seconds": round(self.seconds, 3),
                "iterations_per_s": round(self.steps / max(self.seconds, 1e-9), 3)}
        else:
            row = {"epoch": self.epoch, "loss": self.loss, "lr": self.lr, "images": self.images,
                   "seconds": round(self.seconds, 3),
                   "images_per_s": round(self.images_per_second, 2)}
            if self.accuracy is not None:
                row["train_accuracy"] = round(self.accuracy, 6)
        row.update(self.extra)
        return row

    def where(self, epochs: int) -> str:
        """'epoch 3/90' or 'iteration 200', for the log."""
        if self.iteration is not None:
            return f"iteration {self.iteration}"
        return f"epoch {int(self.epoch) + 1}/{epochs}"


__all__ = ["StepOutput", "SavedSums", "LineSums", "Metrics"]
