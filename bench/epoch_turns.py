"""What a training epoch's loader costs beyond its batches: workers kept between epochs
(the training loaders since ``EpochLoader``) against a fresh loader and fresh workers per
epoch (what they were before).

    python bench/epoch_turns.py                     # CPU, seconds
    python bench/epoch_turns.py --images 20000 --workers 14 --resolution 112   # a GPU host

Reads a subset of in-memory images (uint8 ``3 x 146 x 195``, the cache's 4:3 shape for
112 px) through the supervised augmentation at ``--resolution``, with no model: the time
per epoch is the loader's alone, so the difference is what starting the workers and
filling their queues costs each epoch. The two take turns epoch by epoch; the first epoch
is left out for both (both start workers there). Prints the median epoch seconds of each
and what the turn costs per epoch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _util import print_table  # noqa: E402

from condpretrain.train.data import AugmentedDataset, EpochLoader, supervised_augment  # noqa: E402


class InMemory:
    """An image source of ``count`` random images of one shape (the cache's role)."""

    def __init__(self, count: int, height: int, width: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 256, (min(count, 64), 3, height, width),
                                    dtype=torch.uint8, generator=generator)
        self.count = count

    def __len__(self) -> int:
        return self.count

    def get(self, index: int) -> tuple[torch.Tensor, str]:
        return self.images[index % len(self.images)], ""


def interleaved_epoch_seconds(loaders: dict[str, EpochLoader], epochs: int
                              ) -> dict[str, list[float]]:
    """Each loader's epoch seconds, the loaders taking turns epoch by epoch (a slow spell
    of a shared machine then falls on both); the first epoch left out."""
    times: dict[str, list[float]] = {name: [] for name in loaders}
    for epoch in range(epochs):
        for name, loader in loaders.items():
            started = time.perf_counter()
            for _ in loader(epoch):
                pass
            times[name].append(time.perf_counter() - started)
    return {name: values[1:] for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--resolution", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=16, help="the first is left out")
    args = parser.parse_args()
    side = args.resolution * 8 // 7 + 18  # ~ the cache's short side for the resolution
    source = InMemory(args.images, side, side * 4 // 3)
    dataset = AugmentedDataset(source, supervised_augment(args.resolution),
                               [0] * args.images, seed=0)
    loaders = {name: EpochLoader(dataset, batch_size=args.batch_size, workers=args.workers,
                                 seed=0, rank=0, world=1, shuffle=True, drop_last=False,
                                 pin=False, persistent=name == "kept")
               for name in ("kept", "fresh")}
    times = interleaved_epoch_seconds(loaders, args.epochs)
    medians = {name: statistics.median(values) for name, values in times.items()}
    kept, fresh = medians["kept"], medians["fresh"]
    print_table(f"Epoch seconds, medians of {args.epochs - 1} epochs ({args.images} images, "
                f"{args.resolution} px, batch {args.batch_size}, {args.workers} workers, "
                f"torch {torch.__version__})",
                ["loader", "s / epoch", "img/s", "turn cost vs kept"],
                [["workers kept (EpochLoader)", kept, f"{args.images / kept:,.0f}", ""],
                 ["fresh per epoch (before)", fresh, f"{args.images / fresh:,.0f}",
                  f"{fresh - kept:+.3f} s ({(fresh - kept) / kept:+.1%})"]])


if __name__ == "__main__":
    main()
