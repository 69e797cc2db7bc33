"""A run's loader keeps its workers between epochs and still gives every epoch the batches
a fresh loader gives: the same order, the same seeded augmentation, from any batch on."""

from __future__ import annotations

import os

import pytest
import torch
from torch.utils.data import Dataset

from condpretrain.train.data import EpochLoader, SeededDataset, make_loader

OPTIONS = {"batch_size": 4, "seed": 3, "rank": 0, "world": 1, "shuffle": True,
           "drop_last": False, "pin": False}


class Noisy(Dataset):
    """Sample i: (i, a draw from torch's RNG, the process that made it)."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int):
        return index, torch.rand(()).item(), os.getpid()


def _epoch(loader) -> tuple[list[int], list[float]]:
    indices, draws = [], []
    for index, draw, _ in loader:
        indices += index.tolist()
        draws += draw.tolist()
    return indices, draws


def _fresh(epoch: int, skip: int = 0) -> tuple[list[int], list[float]]:
    return _epoch(make_loader(SeededDataset(Noisy(), 3), epoch=epoch, skip_batches=skip,
                              workers=0, **OPTIONS))


@pytest.mark.parametrize("workers", [0, 2])
def test_every_epoch_matches_a_fresh_loader(workers):
    loaders = EpochLoader(SeededDataset(Noisy(), 3), workers=workers, **OPTIONS)
    seen = [_epoch(loaders(epoch)) for epoch in range(3)]
    assert seen == [_fresh(epoch) for epoch in range(3)]
    assert seen[0][0] != seen[1][0] and seen[0][1] != seen[1][1]  # epochs differ
    assert _epoch(loaders(4, 1)) == _fresh(4, 1)  # a resumed epoch: from batch 1 on
    assert len(loaders(4, 1)) == 2


def test_workers_live_from_the_first_epoch_to_the_last():
    def pids(loader) -> set[int]:
        return {pid for _, _, batch in loader for pid in batch.tolist()}

    kept = EpochLoader(Noisy(), workers=2, **OPTIONS)
    assert pids(kept(0)) == pids(kept(1)) != {os.getpid()}
    fresh = [pids(make_loader(Noisy(), epoch=e, workers=2, **OPTIONS)) for e in range(2)]
    assert fresh[0].isdisjoint(fresh[1])  # a loader per epoch starts new workers


def test_an_epoch_left_half_way_does_not_leak_into_the_next():
    loaders = EpochLoader(SeededDataset(Noisy(), 3), workers=2, **OPTIONS)
    next(iter(loaders(0)))  # a schedule that ends inside an epoch
    assert _epoch(loaders(1)) == _fresh(1)


def test_the_callers_random_stream_is_untouched():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    loaders = EpochLoader(SeededDataset(Noisy(), 3), workers=2, **OPTIONS)
    for epoch in range(2):
        _epoch(loaders(epoch))
    assert torch.equal(torch.rand(3), expected)
