"""A synthetic pool of JPEGs with ImageNet-like sizes and content variety, made on the machine.

ImageNet's training JPEGs are mostly 500 px on the long side (median 500 x 375 / 375 x 500,
~110 KB, quality ~90), with a tail of small and large images and some panoramas. Throughput
figures depend on decode cost (pixels, entropy) as much as on the model, so the images here
follow that: the long side drawn around 500 (a few up to 1,600), aspect ratios from 1:2 to 2.5:1
(mostly 4:3 and 3:4), and content that JPEG cannot squeeze to nothing: smooth colour fields,
filled shapes, fine noise textures and blur, mixed per image. Nothing is downloaded.

    python bench/imagenet_like.py --out /tmp/inet --images 20000 --classes 100 --target 500

writes ``OUT/pool/<class>/<n>.jpg`` and a target ``OUT/target/{train,test}/<class>/<n>.jpg``
(the target's classes are the first ``--target-classes`` of the pool's, so related images exist).
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# (long side, weight): the bulk at 500 px as in ImageNet, a tail either way.
LONG_SIDES = ((500, 0.75), (333, 0.08), (640, 0.07), (800, 0.05), (1024, 0.04), (1600, 0.01))
ASPECTS = ((4 / 3, 0.55), (3 / 4, 0.2), (1.0, 0.12), (16 / 9, 0.08), (2.5, 0.03), (0.5, 0.02))


def _choice(rng: np.random.Generator, table: tuple[tuple[float, float], ...]) -> float:
    values, weights = zip(*table, strict=True)
    return float(rng.choice(values, p=np.asarray(weights) / sum(weights)))


def draw_image(class_id: int, rng: np.random.Generator) -> Image.Image:
    """One image: a class-coloured smooth field, shapes, a noise texture and some blur."""
    long_side, aspect = _choice(rng, LONG_SIDES), _choice(rng, ASPECTS)
    width, height = ((long_side, long_side / aspect) if aspect >= 1
                     else (long_side * aspect, long_side))
    width, height = max(int(width), 32), max(int(height), 32)
    hue = np.random.default_rng(class_id).uniform(0, 255, 3)  # the class's palette
    coarse = rng.normal(hue, 60, (int(rng.integers(2, 6)), int(rng.integers(2, 6)), 3))
    field = Image.fromarray(np.clip(coarse, 0, 255).astype(np.uint8), "RGB").resize(
        (width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(field)
    for _ in range(int(rng.integers(2, 12))):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        x1, y1 = x0 + rng.uniform(8, width / 2), y0 + rng.uniform(8, height / 2)
        colour = tuple(int(v) for v in np.clip(rng.normal(hue, 80), 0, 255))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    pixels = np.asarray(field, dtype=np.float32)
    pixels += rng.normal(0, rng.uniform(4, 24), pixels.shape)  # texture JPEG must keep
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
    return image


def _write(job: tuple[str, int, int, int]) -> int:
    path, class_id, index, seed = job
    rng = np.random.default_rng([seed, class_id, index])
    draw_image(class_id, rng).save(path, quality=int(rng.integers(85, 96)))
    return Path(path).stat().st_size


def make(out: Path, images: int, classes: int, target_train: int, target_test: int,
         target_classes: int, seed: int = 0, workers: int = 8) -> dict[str, object]:
    """Write (or reuse, when made with the same settings) the pool and the target."""
    settings = {"images": images, "classes": classes, "target_train": target_train,
                "target_test": target_test, "target_classes": target_classes, "seed": seed}
    stamp = out / "made.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("settings") == settings:
        return json.loads(stamp.read_text())
    jobs = [(out / "pool" / f"c{i % classes:04d}" / f"{i:07d}.jpg", i % classes, i, seed)
            for i in range(images)]
    per_class = max(1, (target_train + target_test) // max(target_classes, 1))
    for c in range(target_classes):
        for k in range(per_class):
            split = "train" if k < per_class * target_train // (target_train + target_test) \
                else "test"
            jobs.append((out / "target" / split / f"c{c:04d}" / f"{k:05d}.jpg", c,
                         10**8 + k, seed + 1))
    for path, *_ in jobs:
        path.parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(workers) as pool:
        sizes = list(pool.map(_write, [(str(p), *rest) for p, *rest in jobs], chunksize=64))
    made = {"settings": settings, "files": len(jobs),
            "mean_kb": round(float(np.mean(sizes)) / 1024, 1)}
    stamp.write_text(json.dumps(made))  # last: a half-made folder is never reused
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/condpretrain-inet")
    parser.add_argument("--images", type=int, default=20000, help="pool images")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--target", type=int, default=500, help="target train images")
    parser.add_argument("--target-test", type=int, default=200)
    parser.add_argument("--target-classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    made = make(Path(args.out), args.images, args.classes, args.target, args.target_test,
                args.target_classes, args.seed, args.workers)
    print(f"{made['files']} JPEGs under {args.out}, {made['mean_kb']} KB on average")


if __name__ == "__main__":
    main()
