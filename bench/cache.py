"""Size and decode cost of the image cache's records, projected to ImageNet.

    python bench/cache.py /data/imagenet/val --limit 500
    python bench/cache.py photo1.jpg photo2.jpg ...

Give real photos: JPEG sizes of synthetic images say nothing. For each stored short side
(256 for 224 px training, 128 for 112) prints the bytes per image of a record (JPEG q90,
4:4:4) and of raw uint8 pixels, both for the photos given and for a 4:3 image (ImageNet's
typical shape), the total for 1.28 M images, and the time per image (one thread) to read
a record, to read raw pixels from a memory map, and to decode and resize the original
(what ``--no-cache`` pays, before its JPEG round trip).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from condpretrain.data.cache import decode_record, encode_record, stored_pixels
from condpretrain.data.extensions import is_image_file
from condpretrain.data.images import load_rgb

IMAGENET = 1_281_167


def photos(args: list[str], limit: int) -> list[str]:
    found: list[str] = []
    for arg in args:
        path = Path(arg)
        found += sorted(str(p) for p in path.rglob("*") if is_image_file(str(p))) \
            if path.is_dir() else [arg]
    return found[:limit]


def per_image_ms(fn, items: list, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        for item in items:
            fn(item)
        runs.append((time.perf_counter() - started) / len(items))
    return 1e3 * statistics.median(runs)


def measure(paths: list[str], size: int, repeats: int) -> dict[str, float]:
    pixels = [stored_pixels(load_rgb(p), size) for p in paths]
    records = [encode_record(p) for p in pixels]
    areas = [p.shape[1] * p.shape[2] for p in pixels]
    per_pixel = sum(len(r) for r in records) / sum(areas)
    with tempfile.TemporaryDirectory() as tmp:
        raw = np.lib.format.open_memmap(Path(tmp) / "raw.npy", mode="w+", dtype=np.uint8,
                                        shape=(len(paths), 3, size, size))
        for i, p in enumerate(pixels):
            raw[i] = p[:, :size, :size].numpy()
        raw.flush()
        mapped = np.load(Path(tmp) / "raw.npy", mmap_mode="r")
        raw_ms = per_image_ms(lambda i: torch.from_numpy(np.array(mapped[i])),
                              list(range(len(paths))), repeats)
    four_three = size * round(size * 4 / 3)
    return {
        "aspect": statistics.mean(max(p.shape[1:]) / min(p.shape[1:]) for p in pixels),
        "record_bytes": statistics.mean(len(r) for r in records),
        "raw_bytes": 3 * statistics.mean(areas),
        "record_bytes_4_3": per_pixel * four_three,
        "raw_bytes_4_3": 3 * four_three,
        "record_ms": per_image_ms(decode_record, records, repeats),
        "raw_ms": raw_ms,
        "original_ms": per_image_ms(lambda p: stored_pixels(load_rgb(p), size), paths,
                                   max(1, repeats // 3)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", help="photos, or folders of them")
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 128])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(1)
    paths = photos(args.images, args.limit)
    print(f"{len(paths)} photos; one thread; totals for {IMAGENET:,} images")
    print(f"{'stored':>7}{'aspect':>8}{'record B':>10}{'raw B':>9}{'4:3 rec':>9}{'4:3 raw':>9}"
          f"{'total rec':>11}{'total raw':>11}{'rec ms':>8}{'raw ms':>8}{'orig ms':>9}")
    for size in args.sizes:
        m = measure(paths, size, args.repeats)
        print(f"{size:>7}{m['aspect']:>8.2f}{m['record_bytes']:>10.0f}{m['raw_bytes']:>9.0f}"
              f"{m['record_bytes_4_3']:>9.0f}{m['raw_bytes_4_3']:>9.0f}"
              f"{m['record_bytes_4_3'] * IMAGENET / 1e9:>9.1f}GB"
              f"{m['raw_bytes_4_3'] * IMAGENET / 1e9:>9.1f}GB"
              f"{m['record_ms']:>8.3f}{m['raw_ms']:>8.3f}{m['original_ms']:>9.2f}")


if __name__ == "__main__":
    main()
