"""Resizing a decoded batch to the filter resolution, image by image: through torchvision's
transforms (``resize`` + ``center_crop``, then a stack: the device decode path before) and
through ``condpretrain.data.resize_crop`` (the same kernel called directly), on the same
images. The results are equal to the bit; what differs is the host's work per image.

    python bench/resize_crop.py --threads 1               # CPU
    python bench/resize_crop.py --device cuda --batch-size 256

Image sizes are drawn from ``bench/imagenet_like.py``'s table (500 px long side for most,
aspects 1:2 to 2.5:1), random uint8 pixels on the device, as nvJPEG leaves them.
``--scales`` shrinks every side by a factor: at 0.02 the pixels cost next to nothing and
what is left is the host's work per image (dispatch, checks, kernel launches). Prints the
median milliseconds per batch of each path, their ratio and microseconds per image.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

sys.path.insert(0, str(Path(__file__).parent))
from _util import median_seconds, print_table  # noqa: E402
from imagenet_like import ASPECTS, LONG_SIDES, _choice  # noqa: E402

from condpretrain.data.resize_crop import resize_crop  # noqa: E402


def draw_batch(count: int, scale: float, device: torch.device, seed: int
               ) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        long_side, aspect = _choice(rng, LONG_SIDES) * scale, _choice(rng, ASPECTS)
        width, height = ((long_side, long_side / aspect) if aspect >= 1
                         else (long_side * aspect, long_side))
        images.append(torch.randint(0, 256, (3, max(int(height), 8), max(int(width), 8)),
                                    dtype=torch.uint8, device=device))
    return images


def torchvision_path(images: list[torch.Tensor], size: int) -> torch.Tensor:
    return torch.stack([F.center_crop(F.resize(image.float(), size, antialias=True), size)
                        for image in images])


def timed(fn: Callable[[], torch.Tensor], device: torch.device, repeats: int) -> float:
    def call() -> None:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    call()  # warm-up: allocator, cuBLAS handles
    return median_seconds(call, repeats) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--size", type=int, default=224, help="the filter resolution")
    parser.add_argument("--scales", default="1.0,0.02", help="image sides times these")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    rows = []
    for scale in (float(s) for s in args.scales.split(",")):
        size = max(4, round(args.size * min(scale * 2, 1)))  # still a shrink when tiny
        images = draw_batch(args.batch_size, scale, device, seed=0)
        same = torch.equal(resize_crop(images, size), torchvision_path(images, size))
        before = timed(lambda: torchvision_path(images, size), device, args.repeats)  # noqa: B023
        now = timed(lambda: resize_crop(images, size), device, args.repeats)  # noqa: B023
        pixels = sum(image[0].numel() for image in images) / len(images)
        per_image = 1000 / args.batch_size
        rows.append([f"x{scale:g} ({pixels / 1e3:,.1f} K px mean) -> {size} px", before, now,
                     f"{before / now:.2f}x", f"{before * per_image:,.0f} / {now * per_image:,.0f}",
                     "yes" if same else "NO"])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}; torch {torch.__version__}; batch {args.batch_size}; "
          f"threads {torch.get_num_threads()}")
    print_table("Resize + centre crop of one decoded batch, median ms",
                ["images", "torchvision", "resize_crop", "speed-up", "us per image",
                 "equal"], rows)


if __name__ == "__main__":
    main()
