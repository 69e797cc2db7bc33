"""Photo-like test images (1/f colour noise) and planted copies of them, for the search
for evaluation images in the pool."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

KINDS = ("exact", "resized", "jpeg", "flipped")


def photo(rng: np.random.Generator, width: int = 96, height: int = 72) -> Image.Image:
    """Colour noise with a natural image's 1/f spectrum: structure at every scale."""
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :]
    radius = np.hypot(fx, fy)
    radius[0, 0] = 1.0
    channels = []
    for _ in range(3):
        spectrum = (rng.normal(size=radius.shape) + 1j * rng.normal(size=radius.shape)) / radius ** 1.5
        x = np.fft.irfft2(spectrum, s=(height, width))
        channels.append((x - x.mean()) / x.std())
    rgb = np.clip(np.stack(channels, -1) * 0.18 + 0.5, 0, 1)
    return Image.fromarray((rgb * 255).astype(np.uint8))


def write_photos(folder: Path, count: int, seed: int, prefix: str = "img") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"{prefix}_{i:03d}.png"
        photo(rng).save(path)
        paths.append(path)
    return paths


def plant(kind: str, source: Path, folder: Path) -> Path:
    """A copy of ``source`` in ``folder``: byte-exact, half size, JPEG quality 10 or mirrored."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "exact":
        return Path(shutil.copy(source, folder / f"exact_{source.name}"))
    image = Image.open(source).convert("RGB")
    if kind == "resized":
        path = folder / f"resized_{source.stem}.png"
        image.resize((image.width // 2, image.height // 2), Image.Resampling.BICUBIC).save(path)
    elif kind == "jpeg":
        path = folder / f"jpeg_{source.stem}.jpg"
        image.save(path, quality=10)
    elif kind == "flipped":
        path = folder / f"flipped_{source.stem}.png"
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(path)
    else:
        raise ValueError(kind)
    return path


def make_leaky_data(root: Path) -> dict[str, object]:
    """A labelled target (train/, test/, val/) and a pool holding one copy of each kind of
    a different test image, a copy of a val image, and two images that are NOT copies of
    evaluation images: an exact copy of a *train* image and an unrelated photo."""
    target = root / "target"
    train = write_photos(target / "train" / "a", 6, seed=1)
    test = write_photos(target / "test" / "a", 6, seed=2)
    val = write_photos(target / "val" / "a", 2, seed=3)
    pool = root / "pool"
    write_photos(pool / "x", 10, seed=4)
    write_photos(pool / "y", 10, seed=5)
    planted = {kind: plant(kind, test[k], pool / "z") for k, kind in enumerate(KINDS)}
    planted["val"] = plant("resized", val[0], pool / "z" / "v")
    negatives = [plant("exact", train[0], pool / "z" / "train"),
                 write_photos(pool / "z" / "other", 1, seed=6)[0]]
    sources = {kind: test[k] for k, kind in enumerate(KINDS)}
    sources["val"] = val[0]
    return {"target": target, "pool": pool, "planted": planted, "sources": sources,
            "negatives": negatives}
