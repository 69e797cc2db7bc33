"""The demo's data, made from what ships in installed packages (nothing is downloaded).

* Target: scikit-learn's handwritten digits (1,797 scans of 8x8 px, 10 classes),
  upscaled and written as ``target/{train,test}/<digit>/``.
* Pool: four sources, as ImageNet holds cars among much else, each an ImageFolder
  ``pool/<source>/<class>/``:

  - ``digits``: the ten digits typeset in matplotlib's fonts and scanned as the target's
    are (light on black, 8x8 px, upscaled): the target's kind, a small share of the pool
    (``target_share``, 8 % by default);
  - ``characters``: letters, symbols and Greek letters in the same fonts: close to the
    target, but not it;
  - ``photos``: crops of the photographs that ship with scikit-learn and matplotlib;
  - ``shapes``: drawn geometric shapes and patterns.

A good selection method should draw from ``digits`` (then ``characters``) far beyond
their share, and pre-training on what it draws should help the target most.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from condpretrain import atomic
from condpretrain.demo.glyphs import (
    character_classes,
    digit_classes,
    fonts_for,
    render_char,
    render_scan,
)
from condpretrain.demo.pictures import (
    photo_classes,
    render_photo_crop,
    render_shape,
    shape_classes,
)
from condpretrain.errors import CondPretrainError
from condpretrain.log import progress_bar

# Shares of the pool that is not the target's kind (they split 1 - target_share).
OTHER_SHARES = {"characters": 0.4, "photos": 0.3, "shapes": 0.3}
TARGET_KIND = "digits"


@dataclass(frozen=True)
class PoolKind:
    """One source of the pool: its classes and how one image of a class is drawn."""

    name: str
    classes: list[str]
    draw: Callable[[str, int, np.random.Generator], Image.Image]


def pool_kinds() -> list[PoolKind]:
    digits, characters = digit_classes(), character_classes()
    photos, shapes = photo_classes(), shape_classes()

    def glyph(table: dict[str, str], render=render_char
              ) -> Callable[[str, int, np.random.Generator], Image.Image]:
        return lambda cls, size, rng: render(table[cls], fonts_for(table[cls], 64), size, rng)

    return [
        PoolKind(TARGET_KIND, list(digits), glyph(digits, render_scan)),
        PoolKind("characters", list(characters), glyph(characters)),
        PoolKind("photos", list(photos), lambda cls, size, rng: render_photo_crop(
            *photos[cls], size, rng)),
        PoolKind("shapes", list(shapes), lambda cls, size, rng: render_shape(
            shapes[cls], size, rng)),
    ]


def images_per_class(pool_images: int, target_share: float) -> dict[str, int]:
    """Per source, how many images each of its classes gets (at least one)."""
    shares = {TARGET_KIND: target_share,
              **{k: (1 - target_share) * v for k, v in OTHER_SHARES.items()}}
    return {kind.name: max(1, round(pool_images * shares[kind.name] / len(kind.classes)))
            for kind in pool_kinds()}


def write_pool(root: str | Path, pool_images: int, target_share: float, size: int,
               seed: int = 0) -> dict[str, Path]:
    """``root/<source>/<class>/<i>.png`` for every source; returns source -> folder."""
    root = Path(root)
    per_class = images_per_class(pool_images, target_share)
    kinds = pool_kinds()
    total = sum(per_class[k.name] * len(k.classes) for k in kinds)
    folders = {}
    with progress_bar(total, desc="demo pool", unit="img") as bar:
        for k, kind in enumerate(kinds):
            folders[kind.name] = root / kind.name
            for c, cls in enumerate(kind.classes):
                rng = np.random.default_rng([seed, k, c])
                folder = root / kind.name / cls
                folder.mkdir(parents=True, exist_ok=True)
                for i in range(per_class[kind.name]):
                    kind.draw(cls, size, rng).save(folder / f"{cls}_{i:04d}.png")
                bar.update(per_class[kind.name])
    return folders


def write_digits_target(root: str | Path, train_per_class: int, test_per_class: int,
                        size: int = 32, seed: int = 0) -> Path:
    """scikit-learn's digits as ``root/{train,test}/<digit>/<i>.png``, upscaled to ``size``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    root = Path(root)
    rng = np.random.default_rng(seed)
    for label in range(10):
        indices = rng.permutation(np.flatnonzero(digits.target == label))
        if len(indices) < train_per_class + test_per_class:
            raise CondPretrainError(
                f"demo: digit {label} has only {len(indices)} images; ask for fewer per class")
        for split, chosen in (("train", indices[:train_per_class]),
                              ("test", indices[train_per_class:train_per_class + test_per_class])):
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                pixels = (digits.images[i] * (255.0 / 16.0)).astype(np.uint8)
                image = Image.fromarray(pixels, "L").resize((size, size), Image.Resampling.BILINEAR)
                image.convert("RGB").save(folder / f"digit_{i:04d}.png")
    return root


def demo_data_dirs(data_dir: Path) -> tuple[dict[str, Path], Path]:
    """Where the demo's pool sources and target go inside its data folder."""
    return {kind: data_dir / "pool" / kind for kind in (TARGET_KIND, *OTHER_SHARES)}, \
        data_dir / "target"


DATA_SETTINGS = ("image_size", "pool_images", "target_share", "target_train_per_class",
                 "target_test_per_class", "seed")


def make_demo_data(data_dir: str | Path, config) -> tuple[dict[str, Path], Path]:
    """Write (or reuse, when made with the same settings) the demo pool and target."""
    data_dir = Path(data_dir)
    stamp = data_dir / "made.json"
    settings = {k: getattr(config, k) for k in DATA_SETTINGS}
    pools, target = demo_data_dirs(data_dir)
    if atomic.read_json(stamp, default=None) == settings:
        return pools, target
    if data_dir.exists() and any(data_dir.iterdir()):
        _clear_demo_data(data_dir)
    write_digits_target(target, config.target_train_per_class, config.target_test_per_class,
                        config.image_size, config.seed)
    write_pool(data_dir / "pool", config.pool_images, config.target_share, config.image_size,
               config.seed)
    atomic.write_json(stamp, settings)  # last: a half-written data folder is never reused
    return pools, target


def _clear_demo_data(data_dir: Path) -> None:
    """Remove images of an earlier demo data folder (only what the generator writes)."""
    for folder in (data_dir / "pool", data_dir / "target"):
        for current, _dirs, files in os.walk(folder, topdown=False):
            for name in files:
                if name.endswith(".png"):
                    os.unlink(os.path.join(current, name))
            if not os.listdir(current):
                os.rmdir(current)
    (data_dir / "made.json").unlink(missing_ok=True)


__all__ = ["pool_kinds", "images_per_class", "write_pool", "write_digits_target",
           "demo_data_dirs", "make_demo_data", "TARGET_KIND"]
