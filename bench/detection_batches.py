"""Detection batches with and without aspect-ratio grouping: the pixels the detector
computes on (each batch is padded to its largest image, in multiples of 32) and the time
of a training step over them.

    python bench/detection_batches.py                       # CPU, synthetic sizes
    python bench/detection_batches.py --voc VOCdevkit/VOC2007
    python bench/detection_batches.py --device cuda --scale 1 --arch resnet50

Image sizes come from ``--voc``'s trainval annotations, or else from
``bench/imagenet_like.py``'s table (two thirds landscape, as VOC). Each image gets a
shorter side drawn from the recipe's 480..800 (step 32), at most 1333 long, as the
detector's transform resizes it. Part 1 counts pixels over one epoch of ``--images``
images at per-process batches of 2 (MoCo's 16 over 8 GPUs) and 16 (one GPU). Part 2 times
forward + backward of Faster R-CNN C4 (the ``quick`` preset's heads) over the
same ``--timed`` images batched both ways (medians of ``--repeats`` passes, taking turns),
every side times ``--scale`` (0.2 on a CPU: 96-160 px shorter sides), random pixels,
one box each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _util import print_table  # noqa: E402
from imagenet_like import ASPECTS, LONG_SIDES, _choice  # noqa: E402

from condpretrain.config import DetectConfig, build_config  # noqa: E402
from condpretrain.downstream.detection import build_detector  # noqa: E402
from condpretrain.downstream.voc import load_detection_split  # noqa: E402
from condpretrain.train.data import EpochBatches, EpochSampler, grouped_batches  # noqa: E402

SHORT_SIDES = tuple(range(480, 801, 32))
MAX_SIDE, DIVISOR = 1333, 32


def image_sizes(voc: str | None, count: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """(width, height) of ``count`` images: ``voc``'s trainval drawn with replacement,
    or the ImageNet-like table."""
    if voc:
        items = load_detection_split(voc, "trainval")
        return [(items[i].width, items[i].height) for i in rng.integers(0, len(items), count)]
    sizes = []
    for _ in range(count):
        long_side, aspect = _choice(rng, LONG_SIDES), _choice(rng, ASPECTS)
        sizes.append((int(long_side), int(long_side / aspect)) if aspect >= 1
                     else (int(long_side * aspect), int(long_side)))
    return sizes


def resized(size: tuple[int, int], short: int, scale: float) -> tuple[int, int]:
    """(height, width) after the detector's resize (shorter side ``short``, longer at most
    1333), then every side times ``scale``."""
    width, height = size
    factor = min(short / min(width, height), MAX_SIDE / max(width, height)) * scale
    return max(round(height * factor), 1), max(round(width * factor), 1)


def padded_pixels(shapes: list[tuple[int, int]]) -> int:
    height = -(-max(h for h, _ in shapes) // DIVISOR) * DIVISOR
    width = -(-max(w for _, w in shapes) // DIVISOR) * DIVISOR
    return height * width * len(shapes)


def epoch_batches(groups: list[int] | None, count: int, batch: int) -> list[list[int]]:
    return EpochBatches(EpochSampler(count, seed=0), batch, drop_last=True,
                        groups=groups).batches()


def pixel_rows(sizes: list[tuple[int, int]], shorts: list[int]) -> list[list[object]]:
    groups = [0 if w > h else 1 for w, h in sizes]
    shapes = [resized(s, short, 1.0) for s, short in zip(sizes, shorts, strict=True)]
    content = sum(h * w for h, w in shapes) / len(shapes)
    rows = []
    for batch in (2, 16):
        plain, grouped = (sum(padded_pixels([shapes[i] for i in b])
                              for b in epoch_batches(g, len(sizes), batch))
                          / (len(sizes) // batch * batch) for g in (None, groups))
        rows.append([batch, f"{plain / 1e6:.3f}", f"{grouped / 1e6:.3f}",
                     f"{1 - content / plain:.1%}", f"{1 - content / grouped:.1%}",
                     f"{plain / grouped:.3f}"])
    return rows


def train_on(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             batches: list[list[torch.Tensor]], device: torch.device) -> None:
    """Forward, backward and update on each of ``batches`` (one box per image)."""
    for images in batches:
        targets = [{"boxes": torch.tensor([[2.0, 2.0, im.shape[2] / 2, im.shape[1] / 2]],
                                          device=device),
                    "labels": torch.tensor([1], device=device)} for im in images]
        losses = model(images, targets)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(sizes: list[tuple[int, int]], shorts: list[int], batch_size: int,
               args: argparse.Namespace) -> list[object]:
    """Milliseconds per image of training on the same ``args.timed`` images (the first
    of an epoch's order) batched both ways: medians of ``args.repeats`` passes, the two
    ways taking turns."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    config = build_config(DetectConfig, preset="quick", arch=args.arch)
    model = build_detector(config).to(device).train()
    # The images come at their drawn size: the transform only normalises and pads them.
    model.transform.resize = lambda image, target: (image, target)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    chosen = EpochSampler(len(sizes), seed=0).indices()[:args.timed]
    images = {i: torch.rand(3, *resized(sizes[i], shorts[i], args.scale), device=device)
              for i in chosen}
    groups = [0 if w > h else 1 for w, h in sizes]
    ways = {"plain": [chosen[i:i + batch_size] for i in range(0, len(chosen), batch_size)],
            "grouped": grouped_batches(chosen, groups, batch_size)}
    batches = {name: [[images[i] for i in b] for b in way] for name, way in ways.items()}
    train_on(model, optimizer, batches["plain"][:2], device)  # warm-up
    times: dict[str, list[float]] = {"plain": [], "grouped": []}
    for _ in range(args.repeats):
        for name in times:
            started = time.perf_counter()
            train_on(model, optimizer, batches[name], device)
            times[name].append(time.perf_counter() - started)
    plain, grouped = (statistics.median(times[n]) * 1000 / len(chosen) for n in times)
    pixels = {name: sum(padded_pixels([tuple(images[i].shape[-2:]) for i in b]) for b in way)
              for name, way in ways.items()}
    return [batch_size, args.scale, len(chosen), f"{pixels['plain'] / pixels['grouped']:.3f}",
            f"{plain:.1f}", f"{grouped:.1f}", f"{plain / grouped:.2f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--voc", help="a VOC folder: its trainval image sizes")
    parser.add_argument("--images", type=int, default=4000, help="images in part 1's epoch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--arch", default="resnet10")
    parser.add_argument("--scale", type=float, default=0.2, help="part 2's size factor")
    parser.add_argument("--batch-sizes", default="2,8", help="part 2's batches (comma list)")
    parser.add_argument("--timed", type=int, default=48, help="part 2's images")
    parser.add_argument("--repeats", type=int, default=3, help="part 2's passes each way")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    sizes = image_sizes(args.voc, args.images, rng)
    shorts = [int(s) for s in rng.choice(SHORT_SIDES, len(sizes))]
    source = args.voc or "ImageNet-like table"
    landscape = sum(w > h for w, h in sizes) / len(sizes)
    print(f"sizes: {source}, {len(sizes)} images, {landscape:.0%} landscape")
    print_table("Part 1: padded megapixels per image over an epoch (drop_last)",
                ["batch", "plain", "grouped", "padding plain", "padding grouped",
                 "plain/grouped"], pixel_rows(sizes, shorts))
    print_table(f"Part 2: ms per image of training, {args.arch} C4 on {args.device}",
                ["batch", "scale", "images", "pixels plain/grouped", "plain", "grouped",
                 "plain/grouped"],
                [time_steps(sizes, shorts, int(b), args) for b in args.batch_sizes.split(",")])


if __name__ == "__main__":
    main()
