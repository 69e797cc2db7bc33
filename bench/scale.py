"""Scale: scoring with 1 and 2 processes, pool indexing cold and warm, memory per process.

Prints, in one run:
1. images/s of `condpretrain select` (clustering-min on a fixed backbone) run as one
   process and as two torchrun processes on the same pool, and peak RSS per process;
2. seconds to index a pool of many files with no index cache (cold) and from the cache
   (warm).

CPU defaults finish in a few minutes on 2 cores (two processes on 2 cores show the
overhead of the split more than its gain). On a GPU machine, e.g.:
    python bench/scale.py --device cuda --nproc 8 --resolution 224 --arch resnet50 \
        --images 200000 --workers 8 --batch-size 256
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _util import make_pool, print_table, run_child  # noqa: E402

from condpretrain.data.sources import open_pool  # noqa: E402
from condpretrain.models import build_resnet, save_backbone  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--nproc", type=int, default=2, help="processes of the parallel run")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--images", type=int, default=3000, help="pool size for scoring")
    parser.add_argument("--index-files", type=int, default=100_000, help="pool size for indexing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="condpretrain-scale-"))
    torch.manual_seed(0)
    backbone = workdir / "backbone.pt"
    save_backbone(build_resnet(args.arch), backbone)
    pool = make_pool(workdir, args.images, size=max(args.resolution, 32))
    env_cache = workdir / "index-cache"
    os.environ["CONDPRETRAIN_INDEX_CACHE"] = str(env_cache)
    open_pool([str(pool)])  # index once so both runs below measure scoring, not listing

    rows = []
    for nproc in (1, args.nproc):
        out = workdir / f"out-{nproc}"
        launcher = ([sys.executable, "-m", "condpretrain"] if nproc == 1 else
                    [sys.executable, "-m", "torch.distributed.run", "--standalone",
                     "--nproc-per-node", str(nproc), "-m", "condpretrain"])
        runs = []
        for _ in range(args.repeats):
            shutil.rmtree(out, ignore_errors=True)
            seconds, _ = run_child([
                *launcher, "select", "--source", str(pool), "--target", str(pool),
                "--method", "clustering-min", "--features-from", str(backbone), "--count", "100",
                "--filter-resolution", str(args.resolution), "--batch-size",
                str(args.batch_size), "--workers", str(args.workers), "--device", args.device,
                "--clusters", "16", "--out", str(out),
            ])
            meta = json.loads((out / "selection.json").read_text())
            runs.append((meta["timings"]["score"], seconds, meta["peak_rss_mb"]))
        score_seconds, seconds, peaks = sorted(runs)[len(runs) // 2]  # the median run
        rows.append([nproc, seconds, score_seconds, args.images / score_seconds,
                     " / ".join(f"{mb:,.0f}" for mb in peaks)])
    rows[1].append(rows[0][2] / rows[1][2])
    rows[0].append(1.0)
    print_table(f"Scoring {args.images} images: {args.arch} @ {args.resolution}px on "
                f"{args.device} (median of {args.repeats}; torchrun gives each process 1 thread)",
                ["processes", "wall s", "scoring s", "images/s", "peak RSS MB per process",
                 "speed-up"], rows)

    big = make_pool(workdir, args.index_files, size=32)
    shutil.rmtree(env_cache, ignore_errors=True)
    timings = []
    for _ in ("cold", "warm"):
        started = time.perf_counter()
        index = open_pool([str(big)])
        timings.append(time.perf_counter() - started)
    print_table(f"Indexing a pool of {len(index):,} files",
                ["index", "seconds", "files/s"],
                [["cold (no cache)", timings[0], len(index) / timings[0]],
                 ["warm (cached)", timings[1], len(index) / timings[1]],
                 ["ratio cold/warm", timings[0] / timings[1], ""]])


if __name__ == "__main__":
    main()
