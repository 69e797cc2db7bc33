"""Tiny VOC-format datasets drawn by the tests: coloured shapes with boxes and masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# Two VOC classes with a distinct look each: red rectangles are cars, blue ellipses dogs.
SHAPES = {"car": ("rectangle", (220, 40, 40)), "dog": ("ellipse", (40, 60, 220))}
CLASS_INDEX = {"car": 7, "dog": 12}  # 1-based VOC indices (background is 0)


def voc_palette() -> list[int]:
    palette = [0] * 768
    for i, rgb in enumerate([(0, 0, 0)] + [(40 + 10 * k, 0, 0) for k in range(20)]):
        palette[3 * i:3 * i + 3] = rgb
    palette[3 * 255:3 * 256] = [224, 224, 192]
    return palette


def draw_sample(rng: np.random.Generator, size: int) -> tuple[Image.Image, Image.Image, list]:
    image = Image.new("RGB", (size, size), (128, 128, 128))
    mask = Image.new("P", (size, size), 0)
    mask.putpalette(voc_palette())
    draw, mdraw = ImageDraw.Draw(image), ImageDraw.Draw(mask)
    objects = []
    names = list(SHAPES)
    for k in range(int(rng.integers(1, 3))):
        name = names[int(rng.integers(0, 2))] if k else names[int(rng.integers(0, 2))]
        shape, colour = SHAPES[name]
        w, h = (int(v) for v in rng.integers(size // 4, size // 2, 2))
        x0, y0 = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
        box = (x0, y0, x0 + w - 1, y0 + h - 1)  # inclusive pixel corners
        getattr(draw, shape)(box, fill=colour)
        getattr(mdraw, shape)(box, fill=CLASS_INDEX[name])
        # VOC marks object outlines as "ignore"
        getattr(mdraw, shape)(box, outline=255)
        objects.append((name, box[0] + 1, box[1] + 1, box[2] + 1, box[3] + 1))  # 1-based
    return image, mask, objects


def annotation_xml(image_id: str, size: int, objects: list, difficult_last: bool = False) -> str:
    parts = [f"<annotation><filename>{image_id}.jpg</filename>"
             f"<size><width>{size}</width><height>{size}</height><depth>3</depth></size>"]
    for i, (name, x1, y1, x2, y2) in enumerate(objects):
        difficult = int(difficult_last and i == len(objects) - 1)
        parts.append(f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>"
                     f"<xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax>"
                     "</bndbox></object>")
    return "".join(parts) + "</annotation>"


def make_voc(root: Path, train: int = 6, test: int = 4, size: int = 48, seed: int = 0) -> Path:
    """ROOT in the VOC layout, with detection (trainval/test) and segmentation
    (train/val) splits over the same drawn images."""
    rng = np.random.default_rng(seed)
    for sub in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Main",
                "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ids = [f"{i:06d}" for i in range(train + test)]
    for image_id in ids:
        image, mask, objects = draw_sample(rng, size)
        image.save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        mask.save(root / "SegmentationClass" / f"{image_id}.png")
        (root / "Annotations" / f"{image_id}.xml").write_text(annotation_xml(image_id, size, objects))
    for folder, names in (("Main", ("trainval", "test")), ("Segmentation", ("train", "val"))):
        (root / "ImageSets" / folder / f"{names[0]}.txt").write_text("\n".join(ids[:train]) + "\n")
        (root / "ImageSets" / folder / f"{names[1]}.txt").write_text("\n".join(ids[train:]) + "\n")
    return root
