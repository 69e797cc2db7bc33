"""Aspect-ratio grouping: batches of one group, as many as without grouping, resumable."""

from __future__ import annotations

from collections import Counter

import pytest

from condpretrain.train.data import EpochBatches, EpochSampler, grouped_batches


def test_full_batches_hold_one_group_and_every_index_once():
    groups = [int(i % 3 == 0) for i in range(50)]  # a third in group 1
    indices = EpochSampler(50, seed=4).indices()
    batches = grouped_batches(indices, groups, 4)
    assert sorted(i for b in batches for i in b) == list(range(50))
    assert [len(b) for b in batches] == [4] * 12 + [2]  # as many as ungrouped
    mixed = [b for b in batches if len({groups[i] for i in b}) > 1]
    assert len(mixed) <= 1  # only the leftovers (under 4 per group) may mix


def test_a_batch_is_emitted_when_its_group_fills():
    indices, groups = [0, 1, 2, 3, 4, 5, 6], [0, 1, 0, 1, 1, 0, 0]
    assert grouped_batches(indices, groups, 2) == [[0, 2], [1, 3], [5, 6], [4]]
    # the leftovers follow in the epoch's order
    assert grouped_batches([6, 5, 4, 3, 2], [0, 1, 0, 1, 1, 0, 0], 3) == [[6, 5, 2], [4, 3]]


@pytest.mark.parametrize("drop_last", [True, False])
def test_epoch_length_and_resume_are_unchanged(drop_last: bool):
    groups = [int(i % 5 == 0) for i in range(37)]
    for world in (1, 2):
        for rank in range(world):
            order = EpochSampler(37, seed=2, epoch=3, rank=rank, world=world)
            plain = EpochBatches(order, 4, drop_last=drop_last)
            grouped = EpochBatches(order, 4, drop_last=drop_last, groups=groups)
            assert len(grouped) == len(plain) == len(grouped.batches())
            assert [len(b) for b in grouped] == [len(b) for b in plain]
            kept = Counter(i for b in grouped for i in b)
            share = Counter(order.indices())
            assert kept == share if not drop_last else not kept - share
            skipped = EpochBatches(order, 4, drop_last=drop_last, groups=groups, skip=3)
            assert skipped.batches() == grouped.batches()[3:]
