"""Policies: how a budget of images is drawn from a pool's scores (``--policy``).

* ``top``      the paper's: the highest scores (ties broken by a seeded permutation)
* ``sample``   importance resampling without replacement, as DSIR: scores are log-weights
               (weight = exp(score / temperature)), drawn by Gumbel top-k
* ``balanced`` at most ceil(budget / groups) images per group of the pool, the best of
               each group first; what the caps leave of the budget is filled top-first

Every policy returns pool indices ordered best score first (the order ``subset.csv``
promises), whatever order they were drawn in. NaN scores (unreadable images) and the
indices in ``exclude`` (copies of the target's evaluation images) are never drawn.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from condpretrain.errors import CondPretrainError
from condpretrain.log import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Draw:
    """What a policy needs besides the scores."""

    budget: int
    seed: int
    exclude: np.ndarray | None = None
    temperature: float = 1.0
    groups: np.ndarray | None = None  # one group id per pool image (``balanced``)


Policy = Callable[[np.ndarray, Draw], np.ndarray]


def eligible_indices(scores: np.ndarray, exclude: np.ndarray | None) -> np.ndarray:
    """Indices that may be drawn: scored, and not excluded."""
    eligible = ~np.isnan(scores)
    if exclude is not None:
        eligible[exclude] = False
    return np.flatnonzero(eligible)


def best_first(scores: np.ndarray, candidates: np.ndarray, seed: int) -> np.ndarray:
    """``candidates`` by descending score; equal scores in a seeded order, so ties favour
    neither the first pool listed nor change between runs with the same seed."""
    tiebreak = np.random.default_rng(seed).permutation(len(scores))
    return candidates[np.lexsort((tiebreak[candidates], -scores[candidates]))]


def _clamped(budget: int, available: int) -> int:
    if budget > available:
        log.warning("budget of %d is more than the %d scored images: taking them all",
                    budget, available)
        return available
    return budget


def take_top(scores: np.ndarray, draw: Draw) -> np.ndarray:
    """The ``budget`` best scores, best first (the paper's selection)."""
    scores = np.asarray(scores, dtype=np.float32)
    scored = eligible_indices(scores, draw.exclude)
    budget = _clamped(draw.budget, len(scored))
    return best_first(scores, scored, draw.seed)[:budget]


def take_sample(scores: np.ndarray, draw: Draw) -> np.ndarray:
    """``budget`` distinct images drawn with probability proportional to
    exp(score / temperature), sequentially without replacement.

    Gumbel top-k: the k largest of log-weight + Gumbel noise are exactly such a draw
    (Kool et al. 2019), in one vectorised pass over the pool.
    """
    scores = np.asarray(scores, dtype=np.float32)
    scored = eligible_indices(scores, draw.exclude)
    budget = _clamped(draw.budget, len(scored))
    # One noise value per pool image (not per eligible one), so an image's key does not
    # move when another image becomes unreadable or excluded.
    noise = np.random.default_rng(draw.seed).gumbel(size=len(scores))
    keys = scores[scored].astype(np.float64) / draw.temperature + noise[scored]
    drawn = scored[np.argsort(-keys, kind="stable")[:budget]]
    return best_first(scores, drawn, draw.seed)


def take_balanced(scores: np.ndarray, draw: Draw) -> np.ndarray:
    """At most ceil(budget / groups) per group, best first; then the rest top-first."""
    scores = np.asarray(scores, dtype=np.float32)
    if draw.groups is None or len(draw.groups) != len(scores):
        raise ValueError("the balanced policy needs one group id per pool image")
    ranked = best_first(scores, eligible_indices(scores, draw.exclude), draw.seed)
    budget = _clamped(draw.budget, len(ranked))
    groups = np.asarray(draw.groups)
    cap = group_cap(budget, len(np.unique(groups[ranked])))
    taken = np.zeros(len(scores), dtype=bool)
    per_group: dict[object, int] = {}
    count = 0
    for index in ranked:
        if count == budget:
            break
        group = groups[index]
        if per_group.get(group, 0) < cap:
            per_group[group] = per_group.get(group, 0) + 1
            taken[index] = True
            count += 1
    # Groups smaller than the cap leave room: the best of what remains fills it.
    rest = ranked[~taken[ranked]][:budget - count]
    taken[rest] = True
    return ranked[taken[ranked]]


def group_cap(budget: int, groups: int) -> int:
    return math.ceil(budget / groups) if groups else 0


POLICIES: dict[str, Policy] = {"top": take_top, "sample": take_sample,
                               "balanced": take_balanced}


def policy_names() -> list[str]:
    """The choices of ``--policy``, the paper's first."""
    return list(POLICIES)


def draw_budget(policy: str, scores: np.ndarray, draw: Draw) -> np.ndarray:
    """Pool indices chosen by ``policy``, best score first."""
    if policy not in POLICIES:
        raise CondPretrainError(f"--policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    return POLICIES[policy](scores, draw)


def draw_recorded(policy: str, scores: np.ndarray, draw: Draw, labels: list[str],
                  pools: list[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`draw_budget`, and what selection.json records of the draw. ``balanced``
    groups the pool by its labels (else its pools) when ``draw`` brings no groups."""
    record: dict[str, Any] = {"name": policy}
    if policy == "sample":
        record["temperature"] = draw.temperature
    if policy == "balanced" and draw.groups is None:
        # No image features are at hand once scores are saved (nor for every method
        # before), so the pool's own structure makes the groups.
        groups, source = label_groups(labels, pools)
        eligible = eligible_indices(np.asarray(scores, dtype=np.float32), draw.exclude)
        count = len(np.unique(groups[eligible]))
        record["groups"] = {"from": source, "count": count,
                            "cap": group_cap(min(draw.budget, len(eligible)), count),
                            "note": GROUP_NOTES[source]}
        if source == "none":
            log.warning("--policy balanced: %s", GROUP_NOTES[source])
        draw = replace(draw, groups=groups)
    return draw_budget(policy, scores, draw), record


GROUP_NOTES = {
    "labels": "no image features at selection time: the pool's class labels are the groups",
    "pools": "no image features or labels: the pools (--source) are the groups",
    "none": "one unlabelled pool and no image features: a single group, so it equals top",
}


def label_groups(labels: list[str], pools: list[str]) -> tuple[np.ndarray, str]:
    """Group ids for ``balanced`` when no image features are at hand: the pool's class
    labels when it has more than one, else the pools it was made of; and which it used."""
    for name, values in (("labels", labels), ("pools", pools)):
        if all(values) and len(set(values)) > 1:
            return np.unique(np.asarray(values, dtype=object), return_inverse=True)[1], name
    return np.zeros(len(labels), dtype=np.int64), "none"


__all__ = ["Draw", "GROUP_NOTES", "POLICIES", "best_first", "draw_budget", "draw_recorded",
           "eligible_indices", "group_cap", "label_groups", "policy_names", "take_balanced",
           "take_sample", "take_top"]
