"""The one training loop: every model the tool trains goes through :class:`Trainer`.

The scorers' classifiers, supervised and MoCo pre-training, fine-tuning, detection and
segmentation differ only in a :class:`TrainTask` (the model, and one batch to a loss)
and a :class:`Schedule`: whole epochs with a metrics line and an lr step per epoch, or a
number of iterations with a line every ``log_every`` iterations and an lr step per
iteration (Detectron2's warm-up multi-step, PSANet's poly). The loop owns the rest: AMP
with one loss scaler, the progress bar, metrics lines, cost, checkpoints and resume, DDP
agreement, the best-of model.

Resumability: the loop tracks a :class:`Position` (epoch, batches done in it, the
running sums of the current line). ``loader_for_epoch(epoch, skip)`` must yield the
epoch's batches from batch ``skip`` on, in the same order as an uninterrupted epoch (see
``train.data.EpochLoader``), so a run restored from a mid-epoch checkpoint sees exactly
the batches it would have seen. A checkpoint is written by :func:`save_checkpoint` and
read back by :func:`restore`, through the run folder (``train.run.RunDir``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from condpretrain.device import ahead_on_device, autocast
from condpretrain.dist import DistContext, broadcast_flag, unwrap
from condpretrain.errors import CondPretrainError
from condpretrain.log import get_logger, progress_bar
from condpretrain.train.metrics import LineSums, Metrics, SavedSums, StepOutput
from condpretrain.train.run import CHECKPOINT_FILE, CostMeter, RunDir

log = get_logger(__name__)

LoaderForEpoch = Callable[[int, int], Iterable[Any]]
POSTFIX_EVERY = 20  # batches between progress-bar loss readings (each waits for the device)
# Steps between asking rank 0 whether a timed checkpoint is due: under torchrun each ask
# is a broadcast that waits for the device, and checkpoints are minutes apart anyway.
DUE_EVERY = 16


class TrainTask(Protocol):
    """What differs between kinds of training: the model and one batch's loss."""

    model: nn.Module

    def training_step(self, batch: Any, device: torch.device) -> StepOutput:
        """The loss of ``batch`` (the forward pass; the loop does the rest)."""


@dataclass(frozen=True)
class Schedule:
    """How long a run trains and when it writes a metrics line.

    Epoch-based (``iterations`` None): ``epochs`` whole epochs; a line and an lr
    scheduler step after each. Iteration-based: ``iterations`` optimizer steps over as
    many epochs as that takes; a line every ``log_every`` steps and at the last, an lr
    scheduler step after every step; ``iterations_per_epoch`` only scales the lines'
    fractional ``epoch``.
    """

    epochs: int = 0
    iterations: int | None = None
    log_every: int = 1
    iterations_per_epoch: float = 1.0

    @classmethod
    def by_epochs(cls, epochs: int) -> Schedule:
        return cls(epochs=epochs)

    @classmethod
    def by_iterations(cls, iterations: int, log_every: int,
                      iterations_per_epoch: float) -> Schedule:
        return cls(iterations=iterations, log_every=log_every,
                   iterations_per_epoch=iterations_per_epoch)

    @property
    def per_iteration(self) -> bool:
        return self.iterations is not None

    def done(self, pos: Position) -> bool:
        if self.iterations is not None:
            return pos.iteration >= self.iterations
        return pos.epoch >= self.epochs

    def line_due(self, pos: Position) -> bool:
        """After a step: does an iteration-based run write a line now?"""
        return self.per_iteration and (pos.iteration % self.log_every == 0 or self.done(pos))


@dataclass
class Position(SavedSums):
    """Where a run stands: ``step`` batches of ``epoch`` done (``iteration`` optimizer
    steps in all), with the running sums of the metrics line in progress."""

    epoch: int = 0
    step: int = 0
    iteration: int = 0


@dataclass
class Best:
    """The best line so far by ``key`` (higher is better): its scores, and ``save`` is
    called to keep its model (fine-tuning's ``model_best.pt``)."""

    key: str
    save: Callable[[], None]
    scores: dict[str, Any] = field(default_factory=dict)

    def update(self, epoch: int | float, line: dict[str, Any]) -> None:
        if self.key in line and line[self.key] > self.scores.get(self.key, -1.0):
            self.scores = {"epoch": epoch, **line}
            self.save()


@dataclass
class Recorder:
    """Where a run's bookkeeping goes: metrics lines (``run.append_metrics``), cost,
    checkpoints every ``checkpoint_seconds`` (None: at epoch ends only) and the best line.
    ``on_line(metrics)`` may return extra figures for a line (e.g. test accuracy)."""

    run: RunDir
    cost: CostMeter
    flop_factor: float = 3.0
    info: dict[str, Any] = field(default_factory=dict)  # more run.json fields
    checkpoint_seconds: float | None = None
    best: Best | None = None
    on_line: Callable[[Metrics], dict[str, Any] | None] | None = None


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
        self._last_save = time.monotonic()
        self._line_started = time.perf_counter()
        self._lr = self.lr  # the lr of the last step, which a line reports

    # -- state for checkpoints -------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"model": unwrap(self.task.model).state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unwrap(self.task.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
            _sync_lambda_lr(self.scheduler)
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    # -- the loop -----------------------------------------------------------------------------
    def fit(self, loader_for_epoch: Callable[[int], Iterable[Any]], epochs: int) -> list[Metrics]:
        """Whole epochs from scratch, no files (the scorers' classifiers)."""
        return self.run(lambda epoch, skip: loader_for_epoch(epoch), Schedule.by_epochs(epochs))

    def run(self, loader_for_epoch: LoaderForEpoch, schedule: Schedule, *,
            position: Position | None = None, recorder: Recorder | None = None) -> list[Metrics]:
        """Train from ``position`` until ``schedule`` is done; the metrics lines written."""
        pos = dataclasses.replace(position) if position else Position()
        sums = LineSums(self.device, pos)
        history: list[Metrics] = []
        self._last_save = time.monotonic()
        self._line_started = time.perf_counter() - pos.seconds
        while not schedule.done(pos):
            if self._epoch(loader_for_epoch(pos.epoch, pos.step), pos, sums, schedule, recorder,
                           history):
                pos = self._next_epoch(pos, sums, schedule, recorder, history)
        if recorder is not None and schedule.per_iteration:
            self._checkpoint(recorder, sums, pos, schedule)  # the end of the run
        return history

    def _epoch(self, loader: Iterable[Any], pos: Position, sums: LineSums, schedule: Schedule,
               recorder: Recorder | None, history: list[Metrics]) -> bool:
        """Train on ``loader`` (the rest of epoch ``pos.epoch``), advancing ``pos``, until it
        runs out (True) or the schedule is done (False)."""
        self.task.model.train()
        self._lr = self.lr
        with self._bar(loader, pos, schedule) as bar:
            for batch in ahead_on_device(loader, self.device):
                self._lr = self.lr  # the lr this step uses
                sums.add(self.train_step(batch))
                pos.step += 1
                pos.iteration += 1
                if schedule.per_iteration and self.scheduler is not None:
                    self.scheduler.step()
                bar.update(1)
                if pos.step % POSTFIX_EVERY == 0:
                    bar.set_postfix(loss=f"{sums.local_mean_loss():.3f}")
                if schedule.line_due(pos):
                    history.append(self._line(sums, pos, schedule, recorder))
                if schedule.done(pos):
                    return False
                if recorder is not None and self._checkpoint_due(recorder, pos):
                    self._checkpoint(recorder, sums, pos, schedule)
        return True

    def _next_epoch(self, pos: Position, sums: LineSums, schedule: Schedule,
                    recorder: Recorder | None, history: list[Metrics]) -> Position:
        """After an epoch ran out: per-epoch lr step and line, then a checkpoint at the
        start of the next epoch when :meth:`_epoch_end_save_due`."""
        if not schedule.per_iteration:
            if self.scheduler is not None:
                self.scheduler.step()
            history.append(self._line(sums, pos, schedule, recorder))
        pos = Position(epoch=pos.epoch + 1, iteration=pos.iteration)
        if recorder is not None and self._epoch_end_save_due(recorder, pos, schedule):
            self._checkpoint(recorder, sums, pos, schedule)
        return pos

    def _epoch_end_save_due(self, recorder: Recorder, pos: Position, schedule: Schedule
                            ) -> bool:
        """An epoch schedule saves at its last epoch's end, and at the others' when no
        interval is set; with one, an epoch end is like any step: saved when the interval
        is due. On a GPU an epoch of a small subset at 112 px lasts seconds, and a save
        per epoch (a ResNet-50 MoCo checkpoint is ~0.3 GB) would be a visible share of it."""
        if not schedule.per_iteration and (recorder.checkpoint_seconds is None
                                           or schedule.done(pos)):
            return True
        return self._checkpoint_due(recorder, pos)

    def train_step(self, batch: Any) -> StepOutput:
        """One optimizer step (forward, scaled backward, update); the step's output."""
        with autocast(self.device, self.amp):
            out = self.task.training_step(batch, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(out.loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return out

    @property
    def lr(self) -> float:
        """The learning rate of the first parameter group (the one a line reports)."""
        return float(self.optimizer.param_groups[0]["lr"])

    # -- around the steps ---------------------------------------------------------------------
    def _bar(self, loader: Iterable[Any], pos: Position, schedule: Schedule):
        if schedule.iterations is not None:
            return progress_bar(schedule.iterations, desc=self.desc, unit="it",
                                initial=pos.iteration)
        total = pos.step + len(loader) if hasattr(loader, "__len__") else None
        return progress_bar(total, desc=f"{self.desc} {pos.epoch + 1}/{schedule.epochs}",
                            unit="batch", initial=pos.step)

    def _line(self, sums: LineSums, pos: Position, schedule: Schedule,
              recorder: Recorder | None) -> Metrics:
        """Close the metrics line: sum it over the ranks, count its cost, add the
        caller's figures, keep the best, write it; the sums restart from zero."""
        per_iteration = schedule.per_iteration
        lr = self._lr
        metrics = Metrics.of(
            sums.totals(self.dist), lr=lr, seconds=time.perf_counter() - self._line_started,
            epoch=(round(pos.iteration / schedule.iterations_per_epoch, 4) if per_iteration
                   else pos.epoch),
            iteration=pos.iteration if per_iteration else None)
        if not math.isfinite(metrics.loss):
            raise CondPretrainError(f"{self.desc}: the loss became {metrics.loss} by "
                                    f"iteration {pos.iteration}; try a lower --lr")
        if recorder is not None:
            recorder.cost.add_images(metrics.images, recorder.flop_factor)
            extra = recorder.on_line(metrics) if recorder.on_line is not None else None
            metrics.extra.update(extra or {})
            if recorder.best is not None:
                recorder.best.update(metrics.epoch, metrics.extra)
            recorder.run.append_metrics(metrics.as_dict())
        log.info("%s %s loss %.4f lr %.3g %.1f img/s", self.desc, metrics.where(schedule.epochs),
                 metrics.loss, lr, metrics.images_per_second)
        sums.reset()
        self._line_started = time.perf_counter()
        return metrics

    def _checkpoint_due(self, recorder: Recorder, pos: Position) -> bool:
        """Rank 0's clock decides for all (the save sums over every rank); 0 seconds
        means after every batch."""
        seconds = recorder.checkpoint_seconds
        if seconds is None or (seconds > 0 and pos.iteration % DUE_EVERY):
            return False
        due = time.monotonic() - self._last_save >= seconds
        return broadcast_flag(due, self.device, self.dist)

    def _checkpoint(self, recorder: Recorder, sums: LineSums, pos: Position,
                    schedule: Schedule) -> None:
        totals = sums.totals(self.dist)  # all ranks' sums; rank 0 keeps them (see restore)
        saved = Position(**{**dataclasses.asdict(totals), "epoch": pos.epoch, "step": pos.step,
                            "iteration": pos.iteration,
                            "seconds": time.perf_counter() - self._line_started})
        save_checkpoint(recorder, self, saved,
                        {"iteration": pos.iteration} if schedule.per_iteration else {})
        self._last_save = time.monotonic()


def _sync_lambda_lr(scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
    """After a restore, set a LambdaLR's lr from its lambda at the restored step: the
    saved lr came from the lambda of the session that saved it, and a resumed run may
    be longer (PSANet's poly, for one, reaches zero at the last iteration)."""
    if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        for group, base, fn in zip(scheduler.optimizer.param_groups, scheduler.base_lrs,
                                   scheduler.lr_lambdas, strict=True):
            group["lr"] = base * fn(scheduler.last_epoch)


# -- the one checkpoint: save and restore -----------------------------------------------------


def save_checkpoint(recorder: Recorder, trainer: Trainer, position: Position,
                    progress: dict[str, Any]) -> None:
    """Model, optimizer, scheduler, scaler, position, cost, best line and RNG states to
    ``checkpoint.pt`` (atomically, rank 0 only); ``run.json`` says how far it got."""
    started = time.perf_counter()
    state = {**trainer.state_dict(), "position": dataclasses.asdict(position),
             "cost": recorder.cost.state()}
    if recorder.best is not None:
        state["best"] = dict(recorder.best.scores)
    recorder.run.save_checkpoint(state)
    recorder.run.write_cost(recorder.cost, status="running", **recorder.info, **progress)
    log.debug("checkpoint at epoch %d step %d (%.2fs)", position.epoch, position.step,
              time.perf_counter() - started)


@dataclass
class Resumed:
    """What a restored checkpoint hands back besides the trainer's state."""

    position: Position = field(default_factory=Position)
    cost: dict[str, Any] | None = None  # for CostMeter.start
    best: dict[str, Any] = field(default_factory=dict)  # for Best.scores


def restore(run: RunDir, trainer: Trainer, resume: bool) -> Resumed:
    """With ``resume``, load ``run``'s checkpoint into ``trainer`` (and this process's
    RNG states); where it stopped, its cost and best line. A fresh start otherwise."""
    state = run.load_checkpoint() if resume else None
    if state is None:
        if resume:
            log.info("--resume: no checkpoint in %s yet, starting from the beginning", run.path)
        return Resumed()
    try:
        trainer.load_state_dict(state)
        position = Position(**state["position"])
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        # e.g. another model's weights (a size mismatch) or a file of another tool
        raise CondPretrainError(
            f"--resume: {run.file(CHECKPOINT_FILE)} does not fit this run ({_reason(exc)}); "
            "resume with the options it was started with or use another --out") from None
    if trainer.dist.rank != 0:  # the saved sums are all ranks'; rank 0 carries them on
        position = Position(epoch=position.epoch, step=position.step,
                            iteration=position.iteration, seconds=position.seconds)
    log.info("resuming %s at epoch %d, batch %d", run.path, position.epoch + 1, position.step)
    return Resumed(position, state.get("cost"), dict(state.get("best") or {}))


def _reason(exc: Exception) -> str:
    """One short line of ``exc``: load_state_dict's first specific complaint (its first
    line only says that there are errors)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    specific = [line for line in lines[1:] if line.startswith(("size mismatch", "Missing",
                                                               "Unexpected"))]
    line = (specific or lines or [type(exc).__name__])[0]
    return line if len(line) <= 200 else line[:197] + "..."


__all__ = ["TrainTask", "StepOutput", "Schedule", "Position", "Best", "Recorder", "Trainer",
           "Metrics", "Resumed", "save_checkpoint", "restore"]
