"""Calibration of ``select``: what a selection spends its time on, measured with the
tool's own code on this machine.

* Each scored method's real ``fit`` on the target (a fusion's parts in its place; a
  ``METHOD@FEATURES`` on its features), its cached models trained for a few epochs
  (``--target-epochs`` / ``--dc-epochs`` / ``--moco-epochs`` set so that they take
  ``warmup + steps`` steps): the models' seconds per epoch and once per training
  (:func:`~condpretrain.plan.clock.epoch_rate`, with the training time their cached files
  record) and the fit's own time beyond them (loading the model, its test accuracy,
  target features, k-means). An embedding scorer's fit computes the pool's embeddings:
  timed at two pool sizes, per pool image and once.
* Each method's real ``score`` on pool samples of two sizes, after a warm-up batch:
  seconds per pool image, and per call (one call per chunk of ``--chunk-size``).
* The real ``select`` of the ``random`` method (scores from a hash of the path, no
  model: nothing but what every selection does besides its method) on pool samples of
  two sizes: setting up, searching the pool for copies of the target's evaluation
  images, writing the outputs; and the real ``reselect`` of a budget from each.

A target larger than the calibration needs is sampled (its train and test splits alike)
and the measured fit is scaled up by the ratio.
"""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from condpretrain import atomic
from condpretrain.config import PlanConfig, SelectConfig
from condpretrain.config.select import fused_methods, method_and_features
from condpretrain.data.sources import ImageIndex, Target, write_index_csv
from condpretrain.device import resolve_device
from condpretrain.dist import DistContext
from condpretrain.experiment.runner import Experiment
from condpretrain.log import get_logger
from condpretrain.plan.calibrate import calibration_schedule, sample, write_target
from condpretrain.plan.clock import StepClock, epoch_rate
from condpretrain.plan.rates import LinearCost, MethodRate, ModelRate, SelectionRates
from condpretrain.scoring import ScoringContext, create_scorer
from condpretrain.scoring.base import Scorer
from condpretrain.scoring.cost import SharedModel
from condpretrain.selection import SELECTION_JSON, reselect, select

log = get_logger(__name__)

# The select option that sets the epochs of each kind of cached model, by the start of
# its file name (scoring/target_model.py, scoring/domain_classifier.py). A model of
# another kind is priced as the calibration trained it.
MODEL_EPOCHS = {"target-model": "target_epochs", "domain-classifier": "dc_epochs",
                "moco-target": "moco_epochs"}
# The method whose selection is what every selection does besides its own fit and
# scoring: its scores are a hash of each path, no model, no decoding.
BASE_METHOD = "random"
_KEY_HASH = re.compile(r"-[0-9a-f]{16}$")
EMBEDDINGS = "embeddings-"  # a pool's cached embeddings: features/embeddings.py's folder


def model_kind(key: str) -> str:
    """A cached model's kind: its key less the hash of its recipe
    (``target-model-resnet18-9dceda797943a2f6`` -> ``target-model-resnet18``)."""
    return _KEY_HASH.sub("", key)


def _epochs_option(kind: str) -> str | None:
    return next((option for prefix, option in MODEL_EPOCHS.items()
                 if kind == prefix or kind.startswith(prefix + "-")), None)


@dataclasses.dataclass
class _Setting:
    """The calibration's target (maybe sampled), its scale-up and its schedule."""

    target: Target
    scale: float  # real target size / calibrated size
    epochs: int
    config: SelectConfig  # the select options of the cells, epochs and caches for calibration


def calibrate_selection(experiment: Experiment, target_name: str, pool: ImageIndex,
                        target: Target, index_seconds: float, config: PlanConfig,
                        work: Path) -> tuple[SelectionRates, dict]:
    """Every method's rates, the cached models' and what every selection shares."""
    seed = experiment.config.seeds[0]
    # the target's select options with a plain method (a method's own features apart)
    base = experiment.select_config(target_name, BASE_METHOD, seed)
    setting = _setting(base, target, config, work)
    device = resolve_device(config.device)
    order = np.random.default_rng(1).permutation(len(pool))
    methods, models, embeddings, measured = {}, {}, {}, {}
    for method in scored_methods(experiment.config.methods):
        name, features = method_and_features(method)
        select_config = dataclasses.replace(setting.config, method=name,
                                            features=features or setting.config.features)
        scorer = _scorer(select_config, device, work, setting)
        # the pool it fits on holds the images it then scores (an embedding scorer looks
        # each scored image up among the pool's embeddings its fit computed)
        fit_pool = _fit_pool(order, _pool_for_fit(setting), select_config, config)
        fit, trained = _fit(scorer, setting, pool.take(fit_pool), config)
        models.update(trained)
        shared = list(scorer.context.shared_models.values())
        own = max(fit - sum(m.seconds or 0.0 for m in shared if m.trained_here), 0.0)
        score = _score_cost(scorer, pool, order, select_config, config)
        kinds = tuple(_kind(m, select_config) for m in shared)
        for model in shared:  # a pool's embeddings: measured once per features
            kind = _kind(model, select_config)
            if is_embeddings(model) and kind not in embeddings:
                embeddings[kind] = _embedding_cost(model, select_config, device, work,
                                                   setting, pool.take(fit_pool))
        methods[method] = MethodRate(own * setting.scale, score, kinds)
        measured[method] = {"fit_seconds": round(fit, 3),
                            "score_images_per_second": _rate_text(score)}
        log.info("calibrated %s: fit %.2fs (own %.2fs), scoring %s img/s", method, fit, own,
                 measured[method]["score_images_per_second"])
    target_spec = (experiment.config.target_path(target_name) if setting.scale == 1.0 else
                   write_target(setting.target, work / "select-target.csv"))
    every, again = _select_cost(pool, order, target_spec, setting, experiment, config, work)
    log.info("calibrated what every selection does: %.3fs + %.3g s per pool image; "
             "re-selection %.3g s per pool image", every.fixed_seconds, every.per_item_seconds,
             again.per_item_seconds)
    rates = SelectionRates(index_seconds, every, again, methods, models, embeddings)
    return rates, {"methods": measured, "target_scale": setting.scale,
                   "model_epochs": setting.epochs}


def scored_methods(methods: list[str]) -> list[str]:
    """The methods a grid scores: each once, a fusion's parts in its place (a fusion
    scores nothing, it ranks its parts' saved scores)."""
    return list(dict.fromkeys(part for method in methods
                              for part in fused_methods(method) or [method]))


def _setting(base: SelectConfig, target: Target, config: PlanConfig, work: Path) -> _Setting:
    """Train the cached models on the target (sampled when large) by the calibration's
    schedule (:func:`~condpretrain.plan.calibrate.calibration_schedule`): ``warmup +
    steps`` steps or more over a few epochs, but no more epochs than the real models
    train. A MoCo trained on the target (``moco:target`` features) draws its pool images
    in the target's proportion, so that its epochs scale as the target's."""
    train = len(target.train)
    plan = calibration_schedule(train, min(base.batch_size, train), False, config,
                                max(base.target_epochs, base.dc_epochs))
    scale = 1.0
    if plan.images < train:
        scale = train / plan.images
        target = _sampled(target, plan.images / train)
    select = dataclasses.replace(base, target_epochs=plan.epochs, dc_epochs=plan.epochs,
                                 moco_epochs=plan.epochs,
                                 moco_pool_sample=round(base.moco_pool_sample / scale),
                                 device=config.device, cache_dir=str(work / "select-cache"))
    return _Setting(target, scale, plan.epochs, select)


def _sampled(target: Target, share: float) -> Target:
    def part(index: ImageIndex | None) -> ImageIndex | None:
        if index is None:
            return None
        return index.take(np.sort(sample(len(index), max(1, round(len(index) * share)))))

    train = part(target.train)
    assert train is not None
    return Target(target.name, train, part(target.test), part(target.held_out))


def _pool_for_fit(setting: _Setting) -> int:
    """Pool images a fit sees (the domain classifier draws as many as target images, a
    MoCo on the target ``moco_pool_sample``)."""
    return max(2 * len(setting.target.train), setting.config.moco_pool_sample)


def _scorer(config: SelectConfig, device: Any, work: Path, setting: _Setting) -> Scorer:
    context = ScoringContext(config, device, work / "select-cache", DistContext())
    scorer = create_scorer(config.method, context)
    scorer.check_target(setting.target)
    return scorer


def _fit_pool(order: np.ndarray, fit_images: int, select: SelectConfig, plan: PlanConfig
              ) -> np.ndarray:
    """The pool sample a method fits on: the images :func:`_score_cost` scores, and
    more to ``fit_images`` (distinct, in ``order``)."""
    scored = sum(_score_sizes(len(order), select, plan))
    return order[:max(fit_images, scored)]


def is_embeddings(model: SharedModel) -> bool:
    """Whether a shared piece of work is a pool's embeddings (their cache folder is
    ``embeddings-<key>``, features/embeddings.py), priced per pool image."""
    return model.key.startswith(EMBEDDINGS)


def _kind(model: SharedModel, config: SelectConfig) -> str:
    """A cached model's kind; a pool's embeddings are known by their features."""
    return f"{EMBEDDINGS}{config.features}" if is_embeddings(model) else model_kind(model.key)


def _embedding_cost(model: SharedModel, config: SelectConfig, device: Any, work: Path,
                    setting: _Setting, pool: ImageIndex) -> LinearCost:
    """The pool's embeddings per image and once (the extractor, the target's own): the
    fit's, and a second fit's on a quarter of its pool (its models found cached)."""
    smaller = pool.take(np.arange(max(len(pool) // 4, 1)))
    again = _scorer(config, device, work, setting)
    again.fit(setting.target, smaller)
    second = next(m for m in again.context.shared_models.values() if is_embeddings(m))
    return LinearCost.through([(len(smaller), second.seconds or 0.0),
                               (len(pool), model.seconds or 0.0)])


def _fit(scorer: Scorer, setting: _Setting, pool: ImageIndex, config: PlanConfig
         ) -> tuple[float, dict[str, ModelRate]]:
    """The real fit, timed; the training rate of each cached model it trained (a pool's
    embeddings are computed, not trained: no steps)."""
    with StepClock() as clock:
        started = time.perf_counter()
        scorer.fit(setting.target, pool)
        seconds = time.perf_counter() - started
    trained = [m for m in scorer.context.shared_models.values()
               if m.trained_here and not is_embeddings(m)]
    rates = {}
    for model, starts in zip(trained, clock.starts(), strict=False):
        rates[model_kind(model.key)] = _model_rate(model, starts, setting, config)
    return seconds, rates


def _model_rate(model: SharedModel, starts: list[float], setting: _Setting,
                config: PlanConfig) -> ModelRate:
    epoch, fixed = epoch_rate(starts, setting.epochs, config.warmup_steps, model.seconds or 0.0)
    # A sampled target: more steps per epoch, and the passes made once (batch-norm
    # re-estimation, the test accuracy) cover more images.
    kind = model_kind(model.key)
    return ModelRate(epoch * setting.scale, fixed * setting.scale, _epochs_option(kind),
                     setting.epochs)


def _score_cost(scorer: Scorer, pool: ImageIndex, order: np.ndarray, config: SelectConfig,
                plan: PlanConfig) -> LinearCost:
    """Scoring two pool samples (after one warm-up batch): per image and per call."""
    warm, first, second = _slices(order, _score_sizes(len(pool), config, plan))
    scorer.score(pool.take(warm))
    points = []
    for part in (first, second):
        started = time.perf_counter()
        scorer.score(pool.take(part))
        points.append((len(part), time.perf_counter() - started))
    scorer.context.skipped.clear()
    return LinearCost.through(points)


def _score_sizes(pool: int, config: SelectConfig, plan: PlanConfig) -> list[int]:
    """The warm-up batch and the two samples :func:`_score_cost` scores."""
    large = min(pool, plan.score_batches * config.batch_size)
    return [min(config.batch_size, large), max(large // 4, 1), large]


def _slices(order: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """Consecutive parts of ``order`` of the given sizes, wrapping round when it is short
    (distinct images where the pool has enough)."""
    parts, start = [], 0
    for size in sizes:
        parts.append(np.take(order, np.arange(start, start + size), mode="wrap"))
        start += size
    return parts


def _select_cost(pool: ImageIndex, order: np.ndarray, target_spec: str, setting: _Setting,
                 experiment: Experiment, config: PlanConfig, work: Path
                 ) -> tuple[LinearCost, LinearCost]:
    """The real ``select`` with the :data:`BASE_METHOD` on two pool samples (after a
    warm-up on two images), as the runner charges it (the ``cost`` its selection.json
    records), and the real ``reselect`` of the largest budget from each."""
    select_config = dataclasses.replace(setting.config, method=BASE_METHOD,
                                        fraction=min(experiment.config.budgets), count=None)
    large = min(len(pool), config.score_batches * select_config.batch_size)
    sizes = [min(2, large), max(large // 4, 1), large]
    charged, again = [], []
    for i, part in enumerate(_slices(order, sizes)):
        source = work / f"base-{i}" / "pool.csv"
        write_index_csv(source, pool.take(part))
        out = work / f"base-{i}" / "selection"
        select([f"calibration={source}"], target_spec, out, select_config)
        redone = reselect(out, work / f"base-{i}" / "reselected",
                          fraction=max(experiment.config.budgets))
        if i:  # the first is the warm-up
            cost = atomic.read_json(out / SELECTION_JSON)["cost"]
            charged.append((len(part), float(cost["seconds"])))
            again.append((len(part), redone.seconds))
    every = LinearCost.through(charged)
    # a sampled target: its evaluation images, fingerprinted once per selection, are more
    every = dataclasses.replace(every, fixed_seconds=every.fixed_seconds * setting.scale)
    return every, LinearCost.through(again)


def _rate_text(cost: LinearCost) -> float | None:
    return round(1.0 / cost.per_item_seconds, 1) if cost.per_item_seconds > 0 else None


__all__ = ["calibrate_selection", "scored_methods", "model_kind", "MODEL_EPOCHS",
           "BASE_METHOD"]
