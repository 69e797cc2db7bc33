"""Batches reach the device whole; broken samples are dropped there."""

from __future__ import annotations

import torch

from condpretrain.train.data import good_samples, kept_on_device

CPU = torch.device("cpu")


def test_broken_samples_are_dropped_in_order():
    batch = torch.arange(5 * 3 * 2 * 2, dtype=torch.uint8).view(5, 3, 2, 2)
    keep = good_samples(["", "truncated", "", "", "not an image"])
    assert torch.equal(kept_on_device(batch, keep, CPU), batch[[0, 2, 3]])
    assert kept_on_device(torch.arange(5), keep, CPU).tolist() == [0, 2, 3]


def test_a_batch_with_nothing_broken_is_not_indexed():
    batch = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    assert kept_on_device(batch, good_samples([""] * 4), CPU) is batch  # no copy made
