"""What one training view costs a loader worker: MoCo-v2's augmentation with torchvision's
2-D Gaussian blur (before), with ``train.blur``'s two 1-D passes (now), and with its colour
steps left to the device (``--moco-augment-on device``: crop, flip and the parameters'
draw), the supervised crop for reference, on the same stored image and seeds, on one
thread.

    python bench/augment.py

A worker makes two MoCo views per image, so ``workers / (2 x view ms)`` is the most images
a second the loader can feed the GPU, whatever the GPU. Prints the median ms per view of
each pipeline and that ceiling for ``--workers``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).parent))
from _util import print_table  # noqa: E402

from condpretrain.data.cache import stored_size  # noqa: E402
from condpretrain.train.blur import SeparableGaussianBlur  # noqa: E402
from condpretrain.train.data import moco_v2_augment, supervised_augment  # noqa: E402
from condpretrain.train.photometric import CropAndDraw  # noqa: E402


def with_torchvision_blur(resolution: int) -> v2.Compose:
    """``moco_v2_augment`` with its blur swapped back to torchvision's."""
    steps = []
    for step in moco_v2_augment(resolution).transforms:
        inner = getattr(step, "transforms", [])
        if inner and isinstance(inner[0], SeparableGaussianBlur):
            blur = inner[0]
            step = v2.RandomApply([v2.GaussianBlur(blur.kernel_size, sigma=blur.sigma)],
                                  p=step.p)
        steps.append(step)
    return v2.Compose(steps)


def ms_per_view(augment, image: torch.Tensor, views: int) -> float:
    """Median ms over 5 rounds of ``views`` seeded views (the same seeds every round)."""
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for seed in range(views):
            torch.manual_seed(seed)
            augment(image)
        rounds.append((time.perf_counter() - started) * 1000 / views)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", default="224,112")
    parser.add_argument("--views", type=int, default=100, help="views per round")
    parser.add_argument("--workers", type=int, default=14, help="for the ceiling column")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a DataLoader worker's share
    rows = []
    for resolution in (int(r) for r in args.resolutions.split(",")):
        side = stored_size(resolution)  # the cache's stored image, 4:3
        image = torch.randint(0, 256, (3, side, side * 4 // 3), dtype=torch.uint8,
                              generator=torch.Generator().manual_seed(0))
        pipelines = {"moco, torchvision blur": with_torchvision_blur(resolution),
                     "moco, 1-D blur (now)": moco_v2_augment(resolution),
                     "moco, colour on the device": CropAndDraw(resolution),
                     "supervised crop + flip": supervised_augment(resolution)}
        for augment in pipelines.values():  # warm-up
            ms_per_view(augment, image, 5)
        times = {name: ms_per_view(augment, image, args.views)
                 for name, augment in pipelines.items()}
        for name, ms in times.items():
            per_image = ms * (1 if name.startswith("supervised") else 2)
            rows.append([f"{resolution} px (stored {side}): {name}", ms,
                         f"{args.workers * 1000 / per_image:,.0f}"])
    print(f"torch {torch.__version__}; one thread")
    print_table(f"Augmentation per view (median ms) and the loader's ceiling with "
                f"{args.workers} workers (img/s, views only)",
                ["pipeline", "ms / view", "img/s ceiling"], rows)


if __name__ == "__main__":
    main()
