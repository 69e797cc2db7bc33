"""Training data: resumable sharded sampling, seeded augmentation, uint8 batches.

Two choices make runs exactly resumable and independent of the worker count:

* :class:`EpochSampler` draws epoch ``e``'s order from ``(seed, e)`` alone (sharded by
  rank like ``DistributedSampler``) and can start part-way through an epoch.
* :class:`AugmentedDataset` seeds each sample's augmentation from ``(seed, epoch,
  index)``, so a crop does not depend on which worker made it or on what came before.

Batches stay uint8 until they reach the device (4x less to copy, pin and transfer);
:func:`normalize` makes them float and normalised there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import v2

from condpretrain.data.images import IMAGENET_MEAN, IMAGENET_STD
from condpretrain.device import to_device


class ImageSource(Protocol):
    def __len__(self) -> int: ...

    def get(self, index: int) -> tuple[torch.Tensor, str]:
        """uint8 ``3 x S x S`` image and an error ("" when fine)."""


class EpochSampler(Sampler[int]):
    """Seeded per-epoch order, padded to a multiple of the world size, one rank's share,
    from sample ``start`` on."""

    def __init__(self, size: int, *, seed: int, epoch: int = 0, rank: int = 0, world: int = 1,
                 shuffle: bool = True, start: int = 0, pad: bool = True) -> None:
        self.size, self.seed, self.epoch = size, seed, epoch
        self.rank, self.world, self.shuffle, self.start, self.pad = rank, world, shuffle, start, pad

    def indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        if self.pad and self.world > 1 and self.size % self.world:
            order += order[: self.world - self.size % self.world]
        return order[self.rank::self.world][self.start:]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices())

    def __len__(self) -> int:
        share = -(-self.size // self.world) if self.pad else len(range(self.rank, self.size,
                                                                       self.world))
        return max(share - self.start, 0)


class AugmentedDataset(Dataset):
    """``(views, label, index, error)``; ``views`` is ``V x 3 x R x R`` uint8 when
    ``views > 1`` (MoCo's query and key), else ``3 x R x R``."""

    def __init__(self, source: ImageSource, augment: Callable[[torch.Tensor], torch.Tensor],
                 labels: Sequence[int] | np.ndarray | None = None, *, seed: int = 0,
                 views: int = 1) -> None:
        self.source, self.augment, self.labels = source, augment, labels
        self.seed, self.views, self.epoch = seed, views, 0

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, str]:
        image, error = self.source.get(index)
        seed = int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])
        # Transforms draw from torch's global RNG; fork it so the caller's stream is untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            views = [self.augment(image) for _ in range(self.views)]
        out = views[0] if self.views == 1 else torch.stack(views)
        label = -1 if self.labels is None else int(self.labels[index])
        return out, label, index, error


def make_loader(dataset: AugmentedDataset, *, batch_size: int, workers: int, epoch: int,
                seed: int, rank: int, world: int, shuffle: bool, skip_batches: int = 0,
                drop_last: bool, pin: bool) -> DataLoader:
    """A fresh loader for one epoch, starting after ``skip_batches`` batches."""
    dataset.epoch = epoch  # copied into the workers when the loader's iterator starts
    sampler = EpochSampler(len(dataset), seed=seed, epoch=epoch, rank=rank, world=world,
                           shuffle=shuffle, start=skip_batches * batch_size, pad=shuffle)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=pin, drop_last=drop_last, persistent_workers=False,
                      prefetch_factor=4 if workers else None)


def supervised_augment(resolution: int) -> v2.Compose:
    """The standard random-resized crop and flip, on uint8 tensors."""
    return v2.Compose([
        v2.RandomResizedCrop(resolution, interpolation=v2.InterpolationMode.BILINEAR,
                             antialias=True),
        v2.RandomHorizontalFlip(),
    ])


def moco_v2_augment(resolution: int) -> v2.Compose:
    """MoCo-v2's augmentation: crop (0.2-1), colour jitter, greyscale, blur, flip."""
    kernel = max(3, int(0.1 * resolution) // 2 * 2 + 1)  # ~10% of the side, odd
    return v2.Compose([
        v2.RandomResizedCrop(resolution, scale=(0.2, 1.0),
                             interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5),
        v2.RandomHorizontalFlip(),
    ])


def eval_crop(resolution: int) -> v2.CenterCrop:
    """From a stored ``stored_size(resolution)`` square: the usual 224-of-256 centre crop."""
    return v2.CenterCrop(resolution)


_MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
_STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255


def normalize(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 ``B x 3 x H x W`` -> normalised float on ``device`` (channels_last on CUDA)."""
    images = to_device(images, device).float()
    return (images - _MEAN.to(device)) / _STD.to(device)


def good_samples(errors: Sequence[str]) -> torch.Tensor:
    """Mask of the samples whose image decoded (broken files are masked out)."""
    return torch.tensor([not error for error in errors], dtype=torch.bool)
