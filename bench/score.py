"""Scoring throughput and memory.

Prints, in one run:
1. images/s of the full scoring path (decode, resize, DataLoader, model, distances) next
   to images/s of the bare model forward on the same tensors already in memory; the
   ratio shows what the data path costs;
2. peak resident memory of a whole ``condpretrain select`` process at two pool sizes
   (memory must not grow with the pool beyond the score array).

CPU defaults finish in a few minutes on 2 cores. On a GPU machine, e.g.:
    python bench/score.py --device cuda --resolution 224 --arch resnet18 --workers 8 \
        --batch-size 256 --images 20000 --sizes 10000,100000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _util import make_pool, median_seconds, print_table, run_child  # noqa: E402

from condpretrain.config import SelectConfig  # noqa: E402
from condpretrain.data.sources import Target, open_pool  # noqa: E402
from condpretrain.device import prepare_model, resolve_device, to_device  # noqa: E402
from condpretrain.models import build_resnet, save_backbone  # noqa: E402
from condpretrain.scoring import ScoringContext, create_scorer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--images", type=int, default=4000, help="pool size for throughput")
    parser.add_argument("--sizes", default="2000,20000", help="two pool sizes for memory (GPU: 10000,100000)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="condpretrain-bench-"))
    device = resolve_device(args.device)
    torch.manual_seed(0)
    backbone = workdir / f"{args.arch}.pt"
    save_backbone(build_resnet(args.arch), backbone)

    pool_dir = make_pool(workdir, args.images, size=max(args.resolution, 32) * 2)
    pool = open_pool([str(pool_dir)])
    target = open_pool([str(pool_dir)]).take(np.arange(min(256, len(pool))))
    config = SelectConfig(method="clustering-min", count=1, features_from=str(backbone),
                          filter_resolution=args.resolution, batch_size=args.batch_size,
                          workers=args.workers, device=str(device), clusters=16)
    context = ScoringContext(config, device, workdir / "cache")
    scorer = create_scorer("clustering-min", context)
    scorer.fit(Target("bench", target), pool)
    scoring = median_seconds(lambda: scorer.score(pool), args.repeats)

    model = prepare_model(scorer.extractor, device)
    tensors = torch.randn(args.batch_size, 3, args.resolution, args.resolution)
    batches = -(-len(pool) // args.batch_size)

    def bare_forward() -> None:
        with torch.inference_mode():
            for _ in range(batches):
                model(to_device(tensors, device))
            if device.type == "cuda":
                torch.cuda.synchronize()

    bare = median_seconds(bare_forward, args.repeats)
    print_table(
        f"Scoring throughput: {args.arch} @ {args.resolution}px, {len(pool)} images, "
        f"batch {args.batch_size}, {args.workers} workers, {device} (median of {args.repeats})",
        ["path", "seconds", "images/s", "vs bare forward"],
        [["full scoring (clustering-min)", scoring, len(pool) / scoring, bare / scoring],
         ["bare model forward", bare, len(pool) / bare, 1.0]],
    )

    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        sized_pool = make_pool(workdir, size, size=32)
        seconds, peak_mb = run_child([
            sys.executable, "-m", "condpretrain", "select", "--source", str(sized_pool),
            "--method", "clustering-min", "--target", str(pool_dir), "--count", "100",
            "--features-from", str(backbone), "--filter-resolution", "32",
            "--batch-size", str(args.batch_size), "--workers", str(args.workers),
            "--device", str(device), "--clusters", "16", "--out", str(workdir / f"out{size}"),
        ])
        rows.append([size, seconds, size / seconds, peak_mb])
    rows[1].append(rows[1][3] - rows[0][3])
    rows[0].append("")
    print_table("Peak memory of one `condpretrain select` process (clustering-min, 32 px)",
                ["pool images", "seconds", "images/s", "peak RSS MB", "growth MB"], rows)


if __name__ == "__main__":
    main()
