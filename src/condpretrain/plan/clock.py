"""Timing the optimizer steps of real training runs, and a run's rate from them.

Calibration runs the tool's own entry points (``pretrain``, ``finetune``, a scorer's
``fit``) for a few hundred steps, so every cost of the real runs is in the measurement:
decoding and augmenting in the loader, worker start-up each epoch, evaluation passes,
checkpoints. To tell those apart, :class:`StepClock` notes when each optimizer step
starts: while it is open, :meth:`Trainer.train_step` (the one loop's step, which every
kind of training goes through) is wrapped by a function that records the time, per
trainer, and calls the original. Nothing else changes, and the wrapper is removed on exit.
:class:`CallTimer` times fine-tuning's evaluation passes the same way.

The gap between two starts is one step plus any wait for the loader, so a rate from it
is what the run gets, not what the model alone could do. On a GPU the host may run a
few steps ahead of the device (nothing here waits for it): over a few hundred timed
steps that shifts the mean by a few steps' worth at most.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from condpretrain.plan.rates import RunRate
from condpretrain.train.loop import Trainer


class StepClock:
    """Start times of every optimizer step taken while open, one list per training run
    (a run is a trainer; runs go one after the other, never interleaved)."""

    def __init__(self) -> None:
        self.runs: list[list[float]] = []
        self._original: Callable[..., Any] | None = None

    def __enter__(self) -> StepClock:
        original = Trainer.train_step
        runs = self.runs
        last: list[Trainer | None] = [None]  # only the latest trainer is held

        def timed_step(trainer: Trainer, batch: Any) -> Any:
            if trainer is not last[0]:
                last[0] = trainer
                runs.append([])
            runs[-1].append(time.perf_counter())
            return original(trainer, batch)

        self._original = original
        Trainer.train_step = timed_step  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._original is not None:
            Trainer.train_step = self._original  # type: ignore[method-assign]
            self._original = None

    def starts(self) -> list[list[float]]:
        """Each run's step start times."""
        return list(self.runs)


class CallTimer:
    """Durations of the calls to ``owner.name`` made while open (e.g. fine-tuning's
    evaluation pass, ``train.finetune.test_scores``): wrapped and restored as
    :class:`StepClock` wraps the step."""

    def __init__(self, owner: Any, name: str) -> None:
        self.owner, self.name = owner, name
        self.seconds: list[float] = []
        self._original: Callable[..., Any] | None = None

    def __enter__(self) -> CallTimer:
        original = getattr(self.owner, self.name)
        seconds = self.seconds

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds.append(time.perf_counter() - started)

        self._original = original
        setattr(self.owner, self.name, timed)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._original is not None:
            setattr(self.owner, self.name, self._original)
            self._original = None


def run_rate(starts: list[float], epochs: int, warmup: int, run_seconds: float,
             batch_size: int, last_batch: float = 1.0, evaluations: Sequence[float] = ()
             ) -> RunRate:
    """The rate of a run that took ``run_seconds`` in all (as its cost record counts
    them) for ``epochs`` epochs whose steps started at ``starts``; each epoch's last
    step is ``last_batch`` of a full batch; ``evaluations``: the durations of the
    evaluation passes that ended each epoch (none, or one per epoch).

    ``step``: the mean gap between steps of one epoch, the first ``warmup`` left out;
    ``evaluation``: the mean pass, the first (warm-up) left out where others remain;
    ``epoch``: the mean gap where one epoch ends and the next begins, less its last
    step and its evaluation; ``fixed``: the rest of ``run_seconds`` (the warm-up's
    excess, the first loader, the last epoch's evaluation and the final saves)."""
    count = len(starts)
    if count < 2 or epochs < 1:
        raise ValueError(f"a rate needs two steps or more, got {count} in {epochs} epoch(s)")
    per_epoch = max(count // epochs, 1)
    gaps = [(i, starts[i + 1] - starts[i]) for i in range(count - 1)]
    steady = [gap for i, gap in gaps if i >= warmup and (i + 1) % per_epoch]
    turns = [gap for i, gap in gaps if (i + 1) % per_epoch == 0]
    evaluation = statistics.fmean(evaluations[1:] or evaluations) if evaluations else 0.0
    epoch = 0.0
    if steady:
        step = statistics.fmean(steady)
        later = [gap for i, gap in gaps if (i + 1) % per_epoch == 0 and i >= warmup]
        if turns:
            epoch = max(statistics.fmean(later or turns) - step * last_batch - evaluation, 0.0)
    else:  # one step per epoch: its gap holds the epoch's turn too, and stands for both
        gap = statistics.fmean([gap for i, gap in gaps if i >= warmup] or
                               [gap for _, gap in gaps])
        step = max(gap - evaluation, 0.0) / last_batch
    batches = epochs * (per_epoch - 1 + last_batch)
    fixed = run_seconds - batches * step - (epochs - 1) * (epoch + evaluation)
    return RunRate(batch_size, step, epoch, max(fixed, 0.0), evaluation)


def epoch_rate(starts: list[float], epochs: int, warmup: int, run_seconds: float
               ) -> tuple[float, float]:
    """(seconds per epoch, seconds once) of a run whose epochs are alike but whose last
    batch is of unknown size (a scorer's cached model): the mean time from one epoch's
    first step to the next one's, epochs that hold warm-up steps left out where others
    remain; what ``run_seconds`` holds besides ``epochs`` of them is paid once."""
    count = len(starts)
    per_epoch = count // epochs if epochs else 0
    if per_epoch < 1 or epochs < 2:
        raise ValueError(f"an epoch rate needs two epochs or more, got {count} steps in "
                         f"{epochs} epoch(s)")
    firsts = [starts[e * per_epoch] for e in range(epochs)]
    lengths = [(e, firsts[e + 1] - firsts[e]) for e in range(epochs - 1)]
    warm = [length for e, length in lengths if e * per_epoch >= warmup]
    epoch = statistics.fmean(warm or [length for _, length in lengths])
    return epoch, max(run_seconds - epochs * epoch, 0.0)


__all__ = ["StepClock", "CallTimer", "run_rate", "epoch_rate"]
