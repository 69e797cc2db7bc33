"""Training data: resumable sharded sampling, seeded augmentation, uint8 batches.

Two choices make runs exactly resumable and independent of the worker count:

* :class:`EpochSampler` draws epoch ``e``'s order from ``(seed, e)`` alone (sharded by
  rank like ``DistributedSampler``) and can start part-way through an epoch.
* :class:`AugmentedDataset` seeds each sample's augmentation from ``(seed, epoch,
  index)``, so a crop does not depend on which worker made it or on what came before
  (:class:`SeededDataset` does the same for any dataset drawing from torch's RNG).

:class:`EpochBatches` cuts a rank's share into batches and never leaves a last batch
of one sample (BatchNorm cannot train on it): it joins the batch before it.

Batches stay uint8 until they reach the device (4x less to copy, pin and transfer);
:func:`normalize` makes them float and normalised there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import v2

from condpretrain.data.images import normalize_pixels
from condpretrain.device import to_device
from condpretrain.train.blur import SeparableGaussianBlur
from condpretrain.train.photometric import blur_kernel_size, blur_sigma


class ImageSource(Protocol):
    def __len__(self) -> int: ...

    def get(self, index: int) -> tuple[torch.Tensor, str]:
        """uint8 ``3 x H x W`` image (the whole image, short side ``stored_size``) and an
        error ("" when fine)."""


class EpochSampler(Sampler[int]):
    """Epoch ``epoch``'s order, padded to a multiple of the world size, one rank's share,
    from sample ``start`` on.

    ``source`` is the dataset size (the order is then a shuffle drawn from ``(seed,
    epoch)`` alone, or ``range(size)`` without ``shuffle``) or a sampler that makes each
    epoch's order itself (told the epoch through its ``set_epoch``, e.g. a balanced one);
    every rank computes the same order and takes every ``world``-th sample of it.
    ``min_share``: each rank gets at least that many samples (a dataset smaller than a
    batch repeats its samples, so it still makes full batches).
    """

    def __init__(self, source: int | Sampler[int], *, seed: int, epoch: int = 0, rank: int = 0,
                 world: int = 1, shuffle: bool = True, start: int = 0, pad: bool = True,
                 min_share: int = 0) -> None:
        self.base = None if isinstance(source, int) else source
        self.size = source if isinstance(source, int) else len(source)  # type: ignore[arg-type]
        self.seed, self.epoch, self.rank, self.world = seed, epoch, rank, world
        self.shuffle, self.start, self.pad, self.min_share = shuffle, start, pad, min_share

    def order(self) -> list[int]:
        """The epoch's whole order, before it is shared out among the ranks."""
        if self.base is not None:
            if hasattr(self.base, "set_epoch"):
                self.base.set_epoch(self.epoch)
            return list(self.base)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            return torch.randperm(self.size, generator=generator).tolist()
        return list(range(self.size))

    def _length(self) -> int:
        """Length of the order once padded (every rank the same share) and filled."""
        length = max(self.size, self.min_share * self.world)
        if self.pad:
            length = -(-length // self.world) * self.world
        return length

    def indices(self) -> list[int]:
        order = self.order()
        length = self._length()
        if order and len(order) < length:  # repeat the order until it is long enough
            order = (order * -(-length // len(order)))[:length]
        return order[self.rank::self.world][self.start:]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices())

    def __len__(self) -> int:
        length = self._length() if self.size else 0
        return max(len(range(self.rank, length, self.world)) - self.start, 0)


def item_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's augmentation: a function of (seed, epoch, index) alone."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


def _seed_cpu_rng(seed: int) -> None:
    """Seed the CPU generator the transforms draw from. Not ``torch.manual_seed``: that
    also queues a CUDA seeding, with a stack trace, per call (a millisecond per image)."""
    torch.random.default_generator.manual_seed(seed)


class AugmentedDataset(Dataset):
    """``(views, label, index, error)``; ``views`` is ``V x 3 x R x R`` uint8 when
    ``views > 1`` (MoCo's query and key), else ``3 x R x R``. An ``augment`` that returns
    ``(view, parameters)`` (colour steps left to the device) gives ``views`` as the pair
    ``(V x 3 x R x R, V x P)``."""

    def __init__(self, source: ImageSource, augment: Callable[[torch.Tensor], Any],
                 labels: Sequence[int] | np.ndarray | None = None, *, seed: int = 0,
                 views: int = 1) -> None:
        self.source, self.augment, self.labels = source, augment, labels
        self.seed, self.views, self.epoch = seed, views, 0

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[Any, int, int, str]:
        image, error = self.source.get(index)
        # Transforms draw from torch's global RNG; fork it so the caller's stream is untouched.
        with torch.random.fork_rng(devices=[]):
            _seed_cpu_rng(item_seed(self.seed, self.epoch, index))
            views = [self.augment(image) for _ in range(self.views)]
        if isinstance(views[0], tuple):  # (view, its parameters): stacked part by part
            parts = tuple(_stacked(list(part), self.views) for part in zip(*views, strict=True))
            return parts, self._label(index), index, error
        return _stacked(views, self.views), self._label(index), index, error

    def _label(self, index: int) -> int:
        return -1 if self.labels is None else int(self.labels[index])


def _stacked(views: list[torch.Tensor], count: int) -> torch.Tensor:
    return views[0] if count == 1 else torch.stack(views)


class SeededDataset(Dataset):
    """Any dataset whose random augmentation draws from torch's global RNG, made
    reproducible the way :class:`AugmentedDataset` is: sample ``i`` of epoch ``e`` is
    drawn with the RNG seeded from ``(seed, e, i)`` (the caller's stream untouched)."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        with torch.random.fork_rng(devices=[]):
            _seed_cpu_rng(item_seed(self.seed, self.epoch, index))
            return self.dataset[index]


class EpochBatches(Sampler[list[int]]):
    """One rank's share of an epoch (an :class:`EpochSampler`) cut into batches of
    ``batch_size``, from batch ``skip`` on.

    With ``drop_last`` a last partial batch is dropped. Otherwise a last batch of ONE
    sample is merged into the batch before it: BatchNorm cannot train on one sample, so a
    data set of k x batch + 1 images would crash at the end of every epoch; merging keeps
    every image in the epoch (one batch holds ``batch_size + 1``). Every rank's share has
    the same length (padded), so every rank makes the same number of batches. Skipping
    whole batches (not samples) keeps a resumed epoch's batches those of an
    uninterrupted one, the merged last batch included.

    ``groups`` (a group id per dataset index, e.g. landscape / portrait) makes batches
    of one group each, as Detectron2's aspect-ratio grouping: see :func:`grouped_batches`.
    """

    def __init__(self, order: EpochSampler, batch_size: int, *, drop_last: bool,
                 skip: int = 0, groups: Sequence[int] | None = None) -> None:
        self.order, self.batch_size, self.drop_last, self.skip = order, batch_size, drop_last, skip
        self.groups = groups

    def batches(self) -> list[list[int]]:
        indices, size = self.order.indices(), self.batch_size
        if self.groups is not None:
            batches = grouped_batches(indices, self.groups, size)
        else:
            batches = [indices[i:i + size] for i in range(0, len(indices), size)]
        if batches and len(batches[-1]) < size:
            if self.drop_last:
                batches.pop()
            elif len(batches[-1]) == 1 and len(batches) > 1:
                lone = batches.pop()
                batches[-1] = batches[-1] + lone
        return batches[self.skip:]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        share, size = len(self.order), self.batch_size
        count = share // size if self.drop_last else -(-share // size)
        if not self.drop_last and count > 1 and share % size == 1:
            count -= 1  # the lone last sample joins the batch before it
        return max(count - self.skip, 0)


def grouped_batches(indices: Sequence[int], groups: Sequence[int], size: int) -> list[list[int]]:
    """``indices`` (in order) cut into batches of one group each: every index joins its
    group's open batch, which is emitted the moment it holds ``size`` (Detectron2's
    ``AspectRatioGroupedDataset``, per epoch rather than over an endless stream). What the
    groups hold at the end of the epoch (under ``size`` each) follows, in order, cut into
    batches of ``size`` that may mix groups; so there are exactly as many batches, each as
    full, as without grouping, and the schedule does not change."""
    open_batches: dict[int, list[int]] = {}  # group -> positions in ``indices``
    batches: list[list[int]] = []
    for position, index in enumerate(indices):
        members = open_batches.setdefault(int(groups[index]), [])
        members.append(position)
        if len(members) == size:
            batches.append([indices[p] for p in members])
            members.clear()
    left = [indices[p] for p in sorted(p for members in open_batches.values() for p in members)]
    return batches + [left[i:i + size] for i in range(0, len(left), size)]


class _AtEpoch(Dataset):
    """``dataset`` read by ``(epoch, index)`` keys: the epoch travels with every index, so
    workers kept alive between epochs still seed sample ``i`` of epoch ``e`` from ``(seed,
    e, i)`` (a dataset attribute set in the main process would not reach them)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if hasattr(self.dataset, "epoch"):
            self.dataset.epoch = epoch
        return self.dataset[index]


class _KeyedBatches(Sampler[list[tuple[int, int]]]):
    """:class:`EpochBatches` with each index paired with its epoch."""

    def __init__(self, batches: EpochBatches) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.batches.order.epoch
        return iter([[(epoch, i) for i in batch] for batch in self.batches.batches()])

    def __len__(self) -> int:
        return len(self.batches)


class EpochLoader:
    """The loaders of every epoch of a run: ``loaders(epoch, skip_batches)`` is this rank's
    share of an :class:`EpochSampler` over ``dataset`` (or over ``sampler``'s order), in
    :class:`EpochBatches` (never a last batch of one sample), from batch ``skip_batches`` on.

    ``persistent``: one DataLoader whose workers live from the first epoch to the last
    (``persistent_workers``), its batch sampler pointed at each new epoch, rather than a
    fresh loader and fresh workers per epoch; at 112 px an epoch of a small subset lasts
    seconds, and starting a dozen workers and refilling their queues is a visible share of
    that. Batches are the same either way (the epoch travels with each index, and the
    loader's own generator keeps the caller's RNG stream untouched), so a resumed run still
    sees the batches an uninterrupted one saw.
    ``fill``: at least one full batch per rank, however small the dataset. A training
    loader (``shuffle``) gives each rank at least two samples, repeated if need be, so
    even a one-image share makes a batch BatchNorm can train on.
    ``groups``: batches of one group each (:func:`grouped_batches`)."""

    def __init__(self, dataset: Dataset, *, batch_size: int, workers: int, seed: int, rank: int,
                 world: int, shuffle: bool, drop_last: bool, pin: bool,
                 sampler: Sampler[int] | None = None, collate: Callable | None = None,
                 fill: bool = False, persistent: bool = True,
                 groups: Sequence[int] | None = None) -> None:
        order = EpochSampler(sampler if sampler is not None else len(dataset),  # type: ignore[arg-type]
                             seed=seed, rank=rank, world=world, shuffle=shuffle, pad=shuffle,
                             min_share=batch_size if fill else (2 if shuffle else 0))
        self.batches = EpochBatches(order, batch_size, drop_last=drop_last, groups=groups)
        self.loader = DataLoader(
            _AtEpoch(dataset), batch_sampler=_KeyedBatches(self.batches), num_workers=workers,
            collate_fn=collate, pin_memory=pin, persistent_workers=persistent and workers > 0,
            prefetch_factor=4 if workers else None,
            generator=torch.Generator().manual_seed(seed))  # the workers' base seed

    def __call__(self, epoch: int, skip_batches: int = 0) -> DataLoader:
        self.batches.order.epoch, self.batches.skip = epoch, skip_batches
        return self.loader


def make_loader(dataset: Dataset, *, epoch: int, skip_batches: int = 0, **options: Any
                ) -> DataLoader:
    """A loader for one epoch alone (evaluation passes, one-off reads): an
    :class:`EpochLoader` with no workers kept; ``options`` are its arguments."""
    return EpochLoader(dataset, persistent=False, **options)(epoch, skip_batches)


def supervised_augment(resolution: int, scale: float = 0.08, flip: bool = True) -> v2.Compose:
    """The standard random-resized crop (scale 0.08-1, ratio 3/4-4/3, anywhere in the
    whole stored image) and flip, on uint8 tensors."""
    steps: list[Any] = [v2.RandomResizedCrop(resolution, scale=(scale, 1.0),
                                             interpolation=v2.InterpolationMode.BILINEAR,
                                             antialias=True)]
    return v2.Compose([*steps, v2.RandomHorizontalFlip()] if flip else steps)


def moco_v2_augment(resolution: int) -> v2.Compose:
    """MoCo-v2's augmentation: crop (0.2-1), colour jitter, greyscale, blur, flip.

    The blur's sigma range (0.1, 2.0) is MoCo's for 224 px crops; it is scaled with the
    resolution (0.05-1.0 at 112), so a blur removes the same share of the image's detail
    whatever the resolution. The kernel spans ~10% of the side either way; it runs as two
    1-D passes (``train.blur``: torchvision's 2-D kernel is the slowest step of a view)."""
    blur = SeparableGaussianBlur(blur_kernel_size(resolution), sigma=blur_sigma(resolution))
    return v2.Compose([
        v2.RandomResizedCrop(resolution, scale=(0.2, 1.0),
                             interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.RandomApply([blur], p=0.5),
        v2.RandomHorizontalFlip(),
    ])


def eval_crop(resolution: int) -> v2.CenterCrop:
    """From a stored image (short side ``stored_size(resolution)``): the usual
    resize-to-256-then-centre-crop-224."""
    return v2.CenterCrop(resolution)


def normalize(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 ``B x 3 x H x W`` -> normalised float on ``device`` (channels_last on CUDA)."""
    return normalize_pixels(to_device(images, device).float())


def good_samples(errors: Sequence[str]) -> torch.Tensor:
    """Mask of the samples whose image decoded (broken files are masked out)."""
    return torch.tensor([not error for error in errors], dtype=torch.bool)
