"""What the calibration measures, as rates, and the loader's epoch arithmetic they are
applied to (:mod:`.predict` prices a grid's runs with them).

* a training run (pre-training, fine-tuning) costs ``fixed + epochs x images_per_epoch /
  batch x step + (epochs - 1) x epoch + (evaluations - 1) x evaluation`` seconds
  (:class:`RunRate`): ``epoch`` is what happens between two epochs besides the steps and
  the evaluation (the next loader's start-up, the checkpoint), ``fixed`` what happens
  once (warm-up, the first loader, the last evaluation and the final saves); a scorer's
  cached model, trained on the target itself, costs ``fixed + epochs x epoch``
  (:class:`ModelRate`); a downstream task's run (detect, segment), counted in
  iterations, costs ``fixed + iterations x step + precise-BN batches x its pass + test
  images x evaluation`` (:class:`TaskRate`);
* a pass over images (building an image cache, scoring the pool, what every selection
  does besides scoring: searching the pool for copies of evaluation images, writing the
  outputs) costs ``fixed + images x per_image`` per call (:class:`LinearCost`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from condpretrain.config import SelectConfig
from condpretrain.train.data import EpochBatches, EpochSampler


@dataclass(frozen=True)
class LinearCost:
    """Seconds of a pass over images: ``fixed`` per call, ``per_item`` per image."""

    fixed_seconds: float = 0.0
    per_item_seconds: float = 0.0

    def seconds(self, items: float, calls: int = 1) -> float:
        return calls * self.fixed_seconds + items * self.per_item_seconds

    @classmethod
    def through(cls, points: Sequence[tuple[float, float]]) -> LinearCost:
        """The least-squares line through (images, seconds) measurements. Neither part
        is negative: noise that tilts the line below zero is put into the other part."""
        if not points:
            return cls()
        xs, ys = [float(x) for x, _ in points], [float(y) for _, y in points]
        mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
        spread = sum((x - mean_x) ** 2 for x in xs)
        slope = (sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
                 if spread else 0.0)
        if slope <= 0.0:  # one size only, or noise: all per image
            total_x = sum(xs)
            return cls(0.0, sum(ys) / total_x if total_x else 0.0)
        fixed = mean_y - slope * mean_x
        if fixed < 0.0:
            return cls(0.0, sum(ys) / sum(xs))
        return cls(fixed, slope)


@dataclass(frozen=True)
class RunRate:
    """What a training run costs on this machine, measured on a short real run.

    A step's cost is taken as proportional to its images: on a CPU it is, and on a GPU
    the one short batch of an epoch is a small part of its thousands of steps."""

    batch_size: int
    step_seconds: float  # one full batch
    epoch_seconds: float = 0.0  # between two epochs, besides steps and evaluation
    fixed_seconds: float = 0.0  # once, the last epoch's evaluation among it
    evaluation_seconds: float = 0.0  # one evaluation pass (fine-tuning's test split)

    def seconds(self, epochs: int, epoch_images: int, evaluations: int | None = None
                ) -> float:
        """A run of ``epochs`` epochs of ``epoch_images`` images each, evaluated after
        ``evaluations`` of them (every one when None), the last always."""
        evaluations = epochs if evaluations is None else evaluations
        return (self.fixed_seconds + epochs * epoch_images / self.batch_size * self.step_seconds
                + max(epochs - 1, 0) * self.epoch_seconds
                + max(evaluations - 1, 0) * self.evaluation_seconds)

    @property
    def images_per_second(self) -> float:
        return self.batch_size / self.step_seconds if self.step_seconds > 0 else math.inf


@dataclass(frozen=True)
class TaskWork:
    """What a downstream task's run (detect, segment) will do: its options' schedule on
    its splits."""

    iterations: int
    precise_bn_batches: int  # the BatchNorm re-estimation's forward passes
    train_images: int
    test_images: int


@dataclass(frozen=True)
class TaskRate:
    """What a downstream task's run costs on this machine, measured on a short real run:
    ``fixed + iterations x step + precise-BN batches x precise_bn + test images x
    evaluation`` seconds. Its iterations are counted, not its epochs: the loader's turn
    between two epochs is in the mean step at the run's own frequency (same splits, same
    batch)."""

    step_seconds: float  # one iteration
    fixed_seconds: float = 0.0  # once: the splits' lists, the model, the first loader, saves
    precise_bn_seconds: float = 0.0  # one batch of the BatchNorm re-estimation
    evaluation_seconds: float = 0.0  # one test image

    def seconds(self, work: TaskWork) -> float:
        return (self.fixed_seconds + work.iterations * self.step_seconds
                + work.precise_bn_batches * self.precise_bn_seconds
                + work.test_images * self.evaluation_seconds)


@dataclass(frozen=True)
class ModelRate:
    """A scorer's cached model (trained once, used by several methods): seconds per
    epoch at the real target's size, and once per training (its batch-norm
    re-estimation pass among them)."""

    epoch_seconds: float
    fixed_seconds: float
    # The select option that sets its epochs; None: unknown, priced as calibrated.
    epochs_option: str | None
    calibration_epochs: int

    def epochs(self, config: SelectConfig) -> int:
        if self.epochs_option is None:
            return self.calibration_epochs
        return int(getattr(config, self.epochs_option))

    def seconds(self, config: SelectConfig) -> float:
        return self.fixed_seconds + self.epochs(config) * self.epoch_seconds


@dataclass(frozen=True)
class MethodRate:
    """A selection method: its fit beyond training cached models (seconds), its scoring
    (per pool image; fixed per chunk of ``--chunk-size``) and the cached models it uses."""

    fit_seconds: float
    score: LinearCost
    models: tuple[str, ...] = ()


@dataclass(frozen=True)
class SelectionRates:
    """What every ``select`` run does besides its method's fit and scoring (list the
    pool and target; set up, search the pool for copies of evaluation images, write its
    outputs: ``every``, per pool image), what a re-selection of a budget costs, and the
    methods' and their cached models' own rates."""

    index_seconds: float
    every: LinearCost
    reselect: LinearCost
    methods: dict[str, MethodRate]
    models: dict[str, ModelRate]
    # a pool's embeddings by their features (``embeddings-classic``): per pool image
    embeddings: dict[str, LinearCost] = field(default_factory=dict)


@dataclass(frozen=True)
class Rates:
    """Every measurement a prediction needs; keys as :func:`pretrain_key` / modes."""

    selection: SelectionRates
    pretrain: dict[str, RunRate]
    pretrain_cache: dict[int, LinearCost]  # by pre-training resolution
    finetune: dict[str, RunRate]  # by mode (the fine-tuned arch is the mode's)
    finetune_cache: dict[int, LinearCost]  # by fine-tuning resolution
    # A downstream target's training (instead of fine-tuning), by mode: rate and run.
    tasks: dict[str, TaskRate] = field(default_factory=dict)
    task_work: dict[str, TaskWork] = field(default_factory=dict)


@dataclass(frozen=True)
class Sizes:
    pool: int
    target_train: int
    target_test: int


def pretrain_key(mode: str, resolution: int) -> str:
    return f"{mode}-{resolution}"


def _epoch_order(images: int) -> EpochSampler:
    """A training epoch's order as ``train.data.EpochLoader`` draws it (padded, two
    samples at least)."""
    return EpochSampler(images, seed=0, shuffle=True, pad=True, min_share=2)


def steps_per_epoch(images: int, batch_size: int, drop_last: bool) -> int:
    """Optimizer steps of one epoch, by the training loader's own arithmetic (a lone
    last sample joins the batch before it)."""
    return len(EpochBatches(_epoch_order(images), batch_size, drop_last=drop_last))


def evaluated_epochs(epochs: int, every: int) -> int:
    """Epochs after which fine-tuning evaluates: every ``every``-th, and the last."""
    return epochs // every + (1 if epochs % every else 0)


def epoch_images(images: int, batch_size: int, drop_last: bool) -> int:
    """Images one epoch trains on: the padded order, less an incomplete last batch that
    ``drop_last`` drops."""
    share = len(_epoch_order(images))
    return share // batch_size * batch_size if drop_last else share


__all__ = ["LinearCost", "RunRate", "TaskWork", "TaskRate", "ModelRate", "MethodRate", "SelectionRates", "Rates",
           "Sizes", "pretrain_key", "steps_per_epoch", "epoch_images", "evaluated_epochs"]
