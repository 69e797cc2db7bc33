"""Pre-training throughput at 224 and 112 px, with the pre-resized cache on and off.

    python bench/train.py                       # CPU: tiny step counts, a couple of minutes
    python bench/train.py --device cuda --arch resnet34 --batch-size 128 --steps 50 --images 2048

Prints one table: images/s (median over --repeats timed epochs, after a warm-up epoch) at
each resolution and cache setting, and the 224/112 ratio (the FLOP ratio is 4; the paper
measured about 1.7 in hours). Source images are synthetic 400x300 JPEGs, so decoding costs
what it costs on real photos.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from condpretrain.config import PretrainConfig
from condpretrain.train.pretrain import pretrain


def make_pool(root: Path, images: int) -> Path:
    rng = np.random.default_rng(0)
    for i in range(images):
        folder = root / f"c{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=90)
    return root


def throughput(pool: Path, work: Path, resolution: int, cache: bool, args) -> float:
    out = work / f"r{resolution}-{'cache' if cache else 'nocache'}-{time.monotonic_ns()}"
    config = PretrainConfig(arch=args.arch, resolution=resolution, epochs=args.repeats + 1,
                            batch_size=args.batch_size, lr=0.01, workers=args.workers,
                            device=args.device, cache=cache, checkpoint_minutes=1e9,
                            cache_dir=str(work / "cache"))
    pretrain(str(pool), out, config)
    rows = [line for line in (out / "metrics.jsonl").read_text().splitlines()]
    import json

    speeds = [json.loads(r)["images_per_s"] for r in rows[1:]]  # first epoch is warm-up
    return statistics.median(speeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--images", type=int, default=64, help="pool size (one epoch)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pool = make_pool(work / "pool", args.images)
        table = {}
        for cache in (True, False):
            for resolution in (224, 112):
                table[cache, resolution] = throughput(pool, work, resolution, cache, args)
    print(f"pre-training throughput: {args.arch}, {args.device}, batch {args.batch_size}, "
          f"{args.images} images/epoch, median of {args.repeats} epochs (images/s)")
    print(f"{'cache':<8}{'224 px':>10}{'112 px':>10}{'112/224':>10}")
    for cache in (True, False):
        fast, slow = table[cache, 112], table[cache, 224]
        print(f"{'on' if cache else 'off':<8}{slow:>10.1f}{fast:>10.1f}{fast / slow:>9.2f}x")


if __name__ == "__main__":
    main()
