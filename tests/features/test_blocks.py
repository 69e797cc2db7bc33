"""--block-weights: each block's weight from the target's own classes (Fisher ratio
relative to the median block, capped at 1), and the column factors that apply it."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from condpretrain.features.blocks import (
    column_scale,
    fisher_ratio,
    rule_for,
    separability_weights,
    target_block_scale,
)

LAYOUT = {"layout": 2, "colour": 2, "gradients": 2}


def rows_where(separating: dict[str, float], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two classes of 50 rows; each block's class means lie ``separating[block]`` apart
    against unit noise."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(["a", "b"], 50)
    columns = []
    for block, size in LAYOUT.items():
        noise = rng.normal(size=(100, size))
        noise[labels == "b"] += separating[block]
        columns.append(noise)
    return np.concatenate(columns, axis=1), labels


def test_fisher_ratio_grows_with_the_gap_between_classes():
    rows, labels = rows_where({"layout": 0.0, "colour": 1.0, "gradients": 4.0})
    ratios = [fisher_ratio(rows[:, i:i + 2], labels) for i in (0, 2, 4)]
    assert ratios[0] < 0.05 < ratios[1] < ratios[2]
    # between over within: two points per class, 1 apart on one axis, none within
    assert fisher_ratio(np.array([[0.0], [0.0], [1.0], [1.0]]), np.array(list("aabb"))) \
        == pytest.approx(1.0 / 1e-12)


def test_the_least_separating_block_counts_less_and_none_more_than_one():
    rows, labels = rows_where({"layout": 2.0, "colour": 0.0, "gradients": 4.0})
    weights = separability_weights(rows, labels, LAYOUT)
    assert weights is not None
    assert weights["layout"] == weights["gradients"] == 1.0  # the median and above: capped
    ratio = fisher_ratio(rows[:, 2:4], labels) / fisher_ratio(rows[:, 0:2], labels)
    assert weights["colour"] == pytest.approx(ratio) and weights["colour"] < 0.05


def test_one_class_or_one_image_per_class_cannot_weigh_blocks():
    rows, _ = rows_where({"layout": 1.0, "colour": 1.0, "gradients": 1.0})
    assert separability_weights(rows, np.array(["a"] * 100), LAYOUT) is None
    # every image its own class: no within-class scatter to compare with
    assert separability_weights(rows, np.arange(100).astype(str), LAYOUT) is None
    one_pair = np.array(["a", "a", *map(str, range(98))])
    assert separability_weights(rows, one_pair, LAYOUT) is None
    two_pairs = np.array(["a", "a", "b", "b", *map(str, range(96))])
    assert separability_weights(rows, two_pairs, LAYOUT) is not None


def test_column_scale_is_the_square_root_of_each_blocks_weight():
    scale = column_scale({"layout": 1.0, "colour": 0.25, "gradients": 0.0}, LAYOUT)
    np.testing.assert_array_equal(scale, [1, 1, 0.5, 0.5, 0, 0])
    # scaled rows' dot product: each block's dot product times its weight
    a, b = np.arange(1.0, 7.0), np.ones(6)
    assert float((a * scale) @ (b * scale)) == 1 * (1 + 2) + 0.25 * (3 + 4) + 0.0


@pytest.mark.parametrize(("option", "argument", "rule"), [
    ("auto", "", "separability"), ("auto", "layout+gradients", "equal"),
    ("equal", "", "equal"), ("separability", "layout+gradients", "separability")])
def test_auto_weighs_unless_the_blocks_were_named(option, argument, rule):
    assert rule_for(option, argument) == rule


def test_what_is_recorded_for_each_case(caplog):
    rows, labels = rows_where({"layout": 2.0, "colour": 0.0, "gradients": 4.0})
    scale, record = target_block_scale("separability", rows, list(labels), LAYOUT)
    assert record["rule"] == "separability" and scale is not None and len(scale) == 6
    assert target_block_scale("separability", rows, list(labels), None) == \
        (None, {"rule": "none", "why": "one block"})
    assert target_block_scale("equal", rows, list(labels), LAYOUT)[0] is None
    with caplog.at_level(logging.WARNING, logger="condpretrain"):
        scale, record = target_block_scale("separability", rows, [""] * 100, LAYOUT)
    assert scale is None and record["rule"] == "equal"
    assert "do not separate" in caplog.text
