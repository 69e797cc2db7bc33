"""``--block-weights``: how much each block of a descriptor counts for one target.

A descriptor made of blocks (``classic``: layout, colour, gradients) compares images on
every block alike. Which cues make a target what it is varies: drawings of shapes have
one colour, dark strokes on white, and a colour block then pairs them with whatever else
is dark on white, not with the same shapes in colour. The target's own labels tell which
blocks carry its content: a block in which the target's classes stand apart is one
its images are about; a block in which they all look alike says little about them.

``separability`` weighs each block by its Fisher ratio on the target's train images
(between-class over within-class scatter, summed over the block's dimensions), relative
to the median block's, and caps the weight at 1: a block less separating than the median
counts less, none counts more than it would with equal weights (so a block that happens
to split the target's classes cannot take over the comparison). ``equal`` keeps every
block at 1. ``auto`` is ``separability`` when ``--features`` names no blocks and
``equal`` when it names them (``classic:layout+gradients``): the blocks named were chosen.

Weights scale both the target's and the pool's rows, by the square root of each block's
weight, so a dot product sums each block's cosine times its weight. The cached pool
embeddings stay unweighted, shared by every target. A source of one block (every network)
has nothing to weigh.
"""

from __future__ import annotations

import numpy as np

from condpretrain.log import get_logger

log = get_logger(__name__)


def rule_for(option: str, features_argument: str) -> str:
    """The rule ``--block-weights`` picks: ``auto`` resolved against the features named."""
    if option != "auto":
        return option
    return "equal" if features_argument else "separability"


def fisher_ratio(rows: np.ndarray, labels: np.ndarray) -> float:
    """Between-class over within-class scatter of ``rows`` (summed over dimensions)."""
    mean = rows.mean(axis=0)
    between = within = 0.0
    for label in np.unique(labels):
        members = rows[labels == label]
        centre = members.mean(axis=0)
        between += len(members) * float(np.sum((centre - mean) ** 2))
        within += float(np.sum((members - centre) ** 2))
    return between / max(within, 1e-12)


def separability_weights(rows: np.ndarray, labels: np.ndarray,
                         layout: dict[str, int]) -> dict[str, float] | None:
    """Each block's weight (at most 1) from the target's labelled rows; None when the
    rows cannot say (fewer than two classes of two images or more: no within-class
    scatter to compare with; or no block separates them)."""
    _, sizes = np.unique(labels, return_counts=True)
    if np.sum(sizes >= 2) < 2:
        return None
    ratios, start = {}, 0
    for block, size in layout.items():
        ratios[block] = fisher_ratio(rows[:, start:start + size], labels)
        start += size
    median = float(np.median(list(ratios.values())))
    if median <= 0:
        return None
    return {block: min(1.0, ratio / median) for block, ratio in ratios.items()}


def column_scale(weights: dict[str, float], layout: dict[str, int]) -> np.ndarray:
    """The factor of every column: the square root of its block's weight."""
    return np.concatenate([np.full(size, np.sqrt(weights[block]), dtype=np.float32)
                           for block, size in layout.items()])


def target_block_scale(rule: str, rows: np.ndarray, labels: list[str],
                       layout: dict[str, int] | None) -> tuple[np.ndarray | None, dict]:
    """The column factors a rule gives for a target (None: leave the rows as they are)
    and what to record of them."""
    if layout is None or len(layout) < 2:
        return None, {"rule": "none", "why": "one block"}
    if rule == "equal":
        return None, {"rule": "equal", "weights": dict.fromkeys(layout, 1.0)}
    weights = None
    if all(labels):
        weights = separability_weights(rows, np.asarray(labels), layout)
    if weights is None:
        log.warning("--block-weights separability: the target's labels do not separate "
                    "its images (unlabelled, fewer than two classes of two images or more, "
                    "or alike in every block); blocks count equally")
        return None, {"rule": "equal", "weights": dict.fromkeys(layout, 1.0),
                      "why": "target labels do not separate its images"}
    log.info("block weights from the target's classes: %s",
             ", ".join(f"{block} {weight:.2f}" for block, weight in weights.items()))
    return column_scale(weights, layout), {"rule": "separability", "weights": weights}


__all__ = ["column_scale", "fisher_ratio", "rule_for", "separability_weights",
           "target_block_scale"]
