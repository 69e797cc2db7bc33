"""Policies: how a budget of images is drawn from a pool's scores (``--policy``).

* ``top``      the paper's: the highest scores (ties broken by a seeded permutation)
* ``sample``   importance resampling without replacement, as DSIR: scores are log-weights
               (weight = exp(score / temperature)), drawn by Gumbel top-k
* ``balanced`` at most ceil(budget / groups) images per group of the pool, the best of
               each group first; what the caps leave of the budget is filled top-first.
               The groups (``--balance-by``) are the pool's class labels, its pools, or
               k-means clusters of its image features (:mod:`condpretrain.groups`)

Every policy returns pool indices ordered best score first (the order ``subset.csv``
promises), whatever order they were drawn in. NaN scores (unreadable images) and the
indices in ``exclude`` (copies of the target's evaluation images) are never drawn.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
    # ``balanced``: one integer group id per pool image; a negative id is in no group
    # (its image is drawn only when the caps leave part of the budget unused)
    groups: np.ndarray | None = None


@dataclass(frozen=True)
class Grouping:
    """The groups of ``balanced``: an id per pool image (negative: none), what made them
    (labels, pools, features, none) and what selection.json says of them besides."""

    ids: np.ndarray
    source: str
    details: dict[str, Any] = field(default_factory=dict)


# --balance-by: auto is what balanced did before features could group (labels, else pools).
BALANCE_BY = ("auto", "labels", "pools", "features")


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
    grouped = ranked[groups[ranked] >= 0]
    cap = group_cap(budget, len(np.unique(groups[grouped])))
    taken = np.zeros(len(scores), dtype=bool)
    per_group: dict[object, int] = {}
    count = 0
    for index in grouped:
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
                  pools: list[str], balance_by: str = "auto", grouping: Grouping | None = None,
                  ) -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`draw_budget`, and what selection.json records of the draw. ``balanced``
    takes its groups from ``draw``, else ``grouping`` (features: made by the caller, who
    holds the embeddings), else the pool's labels or pools as ``balance_by`` says."""
    record: dict[str, Any] = {"name": policy}
    if policy == "sample":
        record["temperature"] = draw.temperature
    if policy == "balanced" and draw.groups is None:
        grouping = grouping or pool_grouping(balance_by, labels, pools)
        eligible = eligible_indices(np.asarray(scores, dtype=np.float32), draw.exclude)
        ids = grouping.ids[eligible]
        count = len(np.unique(ids[ids >= 0]))
        record["groups"] = {"by": balance_by, "from": grouping.source, "count": count,
                            "cap": group_cap(min(draw.budget, len(eligible)), count),
                            **grouping.details, "note": GROUP_NOTES[grouping.source]}
        if count < 2:
            log.warning("--policy balanced: %d group(s) among the scored images (%s): the "
                        "subset equals top", count, GROUP_NOTES[grouping.source])
        draw = replace(draw, groups=grouping.ids)
    return draw_budget(policy, scores, draw), record


GROUP_NOTES = {
    "labels": "the pool's class labels are the groups",
    "pools": "the pools (--source) are the groups",
    "none": "one unlabelled pool: a single group, so it equals top "
            "(--balance-by features groups by image features)",
    "features": "k-means clusters of the pool's image embeddings are the groups, so "
                "near-duplicates share one",
}


def pool_grouping(balance_by: str, labels: list[str], pools: list[str]) -> Grouping:
    """The groups that the pool's own structure makes (``--balance-by`` auto, labels or
    pools); features need the embeddings, so :mod:`condpretrain.groups` makes those."""
    if balance_by == "auto":
        return Grouping(*label_groups(labels, pools))
    if balance_by not in ("labels", "pools"):
        raise ValueError(f"--balance-by {balance_by}: its groups are made by the caller")
    values = labels if balance_by == "labels" else pools
    missing = sum(1 for value in values if not value)
    if missing:
        raise CondPretrainError(f"--balance-by {balance_by}: {missing} of {len(values)} pool "
                                f"images have no {balance_by[:-1]}; use another --balance-by "
                                "(auto, pools or features)")
    ids = np.unique(np.asarray(values, dtype=object), return_inverse=True)[1]
    return Grouping(ids.astype(np.int64), balance_by)


def label_groups(labels: list[str], pools: list[str]) -> tuple[np.ndarray, str]:
    """Group ids for ``--balance-by auto``: the pool's class labels when it has more than
    one, else the pools it was made of; and which it used."""
    for name, values in (("labels", labels), ("pools", pools)):
        if all(values) and len(set(values)) > 1:
            return np.unique(np.asarray(values, dtype=object), return_inverse=True)[1], name
    return np.zeros(len(labels), dtype=np.int64), "none"


__all__ = ["BALANCE_BY", "Draw", "GROUP_NOTES", "Grouping", "POLICIES", "best_first",
           "draw_budget", "draw_recorded", "eligible_indices", "group_cap", "label_groups",
           "policy_names", "pool_grouping", "take_balanced", "take_sample", "take_top"]
