"""Tiny synthetic images for tests: visually distinct families, deterministic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

FAMILIES = ("stripes", "noise", "checker", "rings")


def family_image(family: str, rng: np.random.Generator, size: int = 24) -> Image.Image:
    """One image of a family; each family differs in colour *and* structure."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi)
    if family == "stripes":  # warm horizontal stripes
        wave = 0.5 + 0.5 * np.sin(y * rng.uniform(0.8, 1.2) + phase)
        rgb = np.stack([0.6 + 0.4 * wave, 0.3 * wave, 0.1 * np.ones_like(wave)], -1)
    elif family == "noise":  # cold speckle
        noise = rng.random((size, size))
        rgb = np.stack([0.1 * noise, 0.3 + 0.3 * noise, 0.6 + 0.4 * noise], -1)
    elif family == "checker":  # green checkerboard
        cell = rng.integers(3, 6)
        board = ((x // cell + y // cell) % 2).astype(np.float32)
        rgb = np.stack([0.2 * board, 0.5 + 0.5 * board, 0.2 * np.ones_like(board)], -1)
    elif family == "rings":  # grey concentric rings
        r = np.hypot(x - size / 2, y - size / 2)
        wave = 0.5 + 0.5 * np.sin(r * rng.uniform(0.8, 1.4) + phase)
        rgb = np.stack([wave, wave, wave], -1)
    else:
        raise ValueError(family)
    rgb = np.clip(rgb + rng.normal(0, 0.03, rgb.shape), 0, 1)
    return Image.fromarray((rgb * 255).astype(np.uint8))


def write_family(folder: Path, family: str, count: int, seed: int = 0, size: int = 24,
                 prefix: str = "") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, FAMILIES.index(family)])
    paths = []
    for i in range(count):
        path = folder / f"{prefix}{family}_{i:04d}.png"
        family_image(family, rng, size).save(path)
        paths.append(path)
    return paths


def make_image_folder(root: Path, classes: dict[str, str], per_class: int, seed: int = 0,
                      size: int = 24) -> Path:
    """ROOT/<class>/<image>, each class drawn from the given family."""
    for offset, (name, family) in enumerate(classes.items()):
        write_family(root / name, family, per_class, seed=seed * 100 + offset, size=size)
    return root


def make_target(root: Path, classes: dict[str, str], train: int, test: int, seed: int = 0,
                size: int = 24) -> Path:
    """ROOT/train/<class>/... and ROOT/test/<class>/..."""
    make_image_folder(root / "train", classes, train, seed=seed + 7, size=size)
    make_image_folder(root / "test", classes, test, seed=seed + 11, size=size)
    return root
