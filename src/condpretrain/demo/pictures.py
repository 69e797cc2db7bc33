"""Two more kinds of pool images, unlike characters: crops of the photographs that ship
with scikit-learn and matplotlib, and drawn geometric shapes on noisy backgrounds.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from condpretrain.errors import CondPretrainError

PHOTO_GRID = (2, 3)  # each photograph is cut into rows x columns regions, one class each
SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "hstripes", "vstripes",
          "checker", "dots")


def photo_files() -> dict[str, Path]:
    """Name -> file of the photographs in installed packages (nothing is downloaded)."""
    import matplotlib
    import sklearn.datasets

    candidates = {
        "china": Path(sklearn.datasets.__file__).parent / "images" / "china.jpg",
        "flower": Path(sklearn.datasets.__file__).parent / "images" / "flower.jpg",
        "hopper": Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
    }
    found = {name: path for name, path in candidates.items() if path.is_file()}
    if not found:
        raise CondPretrainError("demo: no photograph found in scikit-learn or matplotlib")
    return found


def photo_classes() -> dict[str, tuple[str, int, int]]:
    """Class folder name -> (photograph, region row, region column)."""
    rows, cols = PHOTO_GRID
    return {f"photo-{name}-{r}{c}": (name, r, c) for name in photo_files()
            for r in range(rows) for c in range(cols)}


_PHOTOS: dict[str, Image.Image] = {}


def _photo(name: str) -> Image.Image:
    if name not in _PHOTOS:
        with Image.open(photo_files()[name]) as image:
            _PHOTOS[name] = image.convert("RGB")
    return _PHOTOS[name]


def render_photo_crop(name: str, row: int, col: int, size: int,
                      rng: np.random.Generator) -> Image.Image:
    """A random square crop centred in one region of a photograph, maybe mirrored."""
    photo = _photo(name)
    rows, cols = PHOTO_GRID
    cell_w, cell_h = photo.width / cols, photo.height / rows
    side = rng.uniform(0.35, 0.8) * min(cell_w, cell_h)
    cx = (col + rng.uniform(0.2, 0.8)) * cell_w
    cy = (row + rng.uniform(0.2, 0.8)) * cell_h
    left = min(max(cx - side / 2, 0), photo.width - side)
    top = min(max(cy - side / 2, 0), photo.height - side)
    crop = photo.resize((size, size), Image.Resampling.BILINEAR,
                        box=(left, top, left + side, top + side))
    return crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop


def shape_classes() -> dict[str, str]:
    return {f"shape-{shape}": shape for shape in SHAPES}


def render_shape(shape: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One shape in a random colour, size and place on a noisy background of another."""
    canvas = size * 2
    background = rng.integers(0, 256, 3)
    noise = rng.normal(0, 18, (canvas, canvas, 1))
    pixels = np.clip(background[None, None, :] + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    colour = tuple(int(v) for v in (background + rng.integers(90, 166, 3)) % 256)
    draw = ImageDraw.Draw(image)
    radius = canvas * rng.uniform(0.22, 0.4)
    cx, cy = canvas / 2 + rng.uniform(-0.12, 0.12, 2) * canvas
    _draw_shape(draw, shape, cx, cy, radius, colour, canvas, float(rng.uniform(0, math.pi)))
    return image.resize((size, size), Image.Resampling.BILINEAR)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float,
                colour: tuple[int, ...], canvas: int, angle: float) -> None:
    box = (cx - r, cy - r, cx + r, cy + r)
    width = max(2, round(r / 3))
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "ring":
        draw.ellipse(box, outline=colour, width=width)
    elif shape in ("square", "triangle", "star"):
        corners = {"square": 4, "triangle": 3, "star": 10}[shape]
        points = []
        for k in range(corners):
            radius = r * (0.45 if shape == "star" and k % 2 else 1.0)
            theta = angle + 2 * math.pi * k / corners
            points.append((cx + radius * math.cos(theta), cy + radius * math.sin(theta)))
        draw.polygon(points, fill=colour)
    elif shape == "cross":
        draw.line((cx - r, cy, cx + r, cy), fill=colour, width=width)
        draw.line((cx, cy - r, cx, cy + r), fill=colour, width=width)
    elif shape in ("hstripes", "vstripes"):
        step = max(4, round(r / 2))
        for offset in range(0, canvas, 2 * step):
            line = ((0, offset, canvas, offset + step) if shape == "hstripes"
                    else (offset, 0, offset + step, canvas))
            draw.rectangle(line, fill=colour)
    elif shape == "checker":
        step = max(4, round(r / 2))
        for x in range(0, canvas, step):
            for y in range(0, canvas, step):
                if (x // step + y // step) % 2:
                    draw.rectangle((x, y, x + step - 1, y + step - 1), fill=colour)
    elif shape == "dots":
        step = max(6, round(r / 1.5))
        for x in range(step // 2, canvas, step):
            for y in range(step // 2, canvas, step):
                draw.ellipse((x - step / 4, y - step / 4, x + step / 4, y + step / 4),
                             fill=colour)
    else:
        raise CondPretrainError(f"demo: unknown shape {shape!r}")


__all__ = ["photo_files", "photo_classes", "render_photo_crop", "shape_classes",
           "render_shape", "SHAPES"]
