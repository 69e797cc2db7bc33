"""Scoring's input path stage by stage: where the time of ``select --decode gpu`` goes.

    python bench/decode_path.py --pool /tmp/gpu-bench/data/pool --device cuda   # a GPU
    python bench/decode_path.py --pool POOL --device cpu --images 512 --workers 2  # smoke

On the first ``--images`` JPEGs of a pool folder (``bench/imagenet_like.py`` makes one),
one batch at a time, images/s of:

  read         the DataLoader workers reading each file's bytes and header (all a
               worker does on the device path)
  decode       ``torchvision.io.decode_jpeg`` of each batch's bytes (on CUDA: nvJPEG,
               batched), the bytes already in memory
  resize       the decoded batch resized and centre-cropped image by image through
               torchvision's transforms (the path before) and through ``resize_crop``
               (the path now: the same kernel, less host work per image)
  device path  all of it through ``device_batches`` (what ``select --decode gpu`` runs
               before the model)
  Pillow path  ``pool_batches`` with Pillow decoding in the workers (``--decode cpu``)

Per-batch stages give the median over batches (the first left out); the two whole paths
give the pass's rate after its first batch. ``bench/gpu.py`` prints these rows beside the
scoring figure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision.io import ImageReadMode, decode_jpeg

sys.path.insert(0, str(Path(__file__).parent))
from _util import print_table  # noqa: E402
from resize_crop import torchvision_path  # noqa: E402  (bench/resize_crop.py)

from condpretrain.config.common import PILLOW_PIXEL_LIMIT as MAX_PIXELS  # noqa: E402
from condpretrain.data.device_decode import (  # noqa: E402
    EncodedDataset,
    device_batches,
    pool_batches,
)
from condpretrain.data.resize_crop import resize_crop  # noqa: E402

ROW = tuple[str, float]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pass_rate(batches: Iterable[object], sizes: Callable[[object], int],
              device: torch.device) -> float:
    """Images/s of a whole pass, timed from its first batch (workers started) to its end."""
    started, count = None, 0
    for batch in batches:
        _sync(device)
        if started is None:
            started = time.perf_counter()
            continue
        count += sizes(batch)
    _sync(device)
    return count / (time.perf_counter() - started) if started and count else float("nan")


def per_batch_rate(work: Callable[[object], object], batches: Sequence[object],
                   sizes: Callable[[object], int], device: torch.device) -> float:
    """Median images/s of ``work`` over ``batches`` (the first, a warm-up, left out)."""
    rates = []
    for k, batch in enumerate(batches):
        _sync(device)
        started = time.perf_counter()
        work(batch)
        _sync(device)
        if k:
            rates.append(sizes(batch) / (time.perf_counter() - started))
    return statistics.median(rates) if rates else float("nan")


def decode(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


def decode_rows(paths: Sequence[str], *, resolution: int, batch_size: int, workers: int,
                device: torch.device) -> list[ROW]:
    dataset = EncodedDataset(paths, resolution, MAX_PIXELS)
    read: list[list[torch.Tensor]] = []

    def keep(batch: list) -> int:
        read.append([item for item, _, error in batch if not error and item.dim() == 1])
        return len(batch)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                        collate_fn=list, pin_memory=device.type == "cuda")
    rows = [("read (workers: bytes + header)", pass_rate(loader, keep, device))]
    read = [batch for batch in read if batch]
    decoded = [decode(batch, device) for batch in read[:2]]  # warm nvJPEG up
    rows.append(("decode (torchvision decode_jpeg)",
                 per_batch_rate(lambda b: decode(b, device), read, len, device)))
    decoded = [decode(batch, device) for batch in read]
    rows.append(("resize (torchvision transforms)",
                 per_batch_rate(lambda b: torchvision_path(b, resolution), decoded, len,
                                device)))
    rows.append(("resize (resize_crop)",
                 per_batch_rate(lambda b: resize_crop(b, resolution), decoded, len, device)))
    del decoded
    options = {"resolution": resolution, "batch_size": batch_size, "workers": workers,
               "max_pixels": MAX_PIXELS, "device": device}
    whole = device_batches(paths, **{k: v for k, v in options.items() if k != "device"},
                           device=device)
    rows.append(("device path (all of the above)", pass_rate(whole, lambda b: len(b.rows),
                                                            device)))
    pillow = pool_batches(paths, decode_on=None, **options)
    rows.append(("Pillow path (decode in the workers)",
                 pass_rate(pillow, lambda b: len(b.rows), device)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", required=True, help="a folder of JPEGs (searched below)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=12)
    args = parser.parse_args()
    paths = sorted(str(p) for p in Path(args.pool).rglob("*.jpg"))[:args.images]
    device = torch.device(args.device)
    with torch.inference_mode():
        rows = decode_rows(paths, resolution=args.resolution, batch_size=args.batch_size,
                           workers=args.workers, device=device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}; torch {torch.__version__}; {len(paths)} JPEGs; batch "
          f"{args.batch_size}; workers {args.workers}")
    print_table("Scoring's input path, images/s", ["stage", "img/s"],
                [[stage, f"{rate:,.0f}"] for stage, rate in rows])


if __name__ == "__main__":
    main()
