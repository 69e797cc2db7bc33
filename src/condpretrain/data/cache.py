"""Pre-resized low-resolution copies of a set of images, for training.

Decoding full-size JPEGs every epoch can cost more than a low-resolution forward pass
saves, so a run pre-resizes its images once: the short side is resized (bilinear, with
antialiasing) to ``stored_size(resolution)``, the centre square kept, and all images
written to one uint8 ``N x 3 x S x S`` ``.npy`` file that training memory-maps. A
second boolean array marks the images that could not be decoded.

:func:`preresize` is also what the uncached path applies on every read, so training
from the cache and training without it see the same pixels.

The cache's name carries a hash of the paths and the size, so a changed subset never
reads a stale cache. At ImageNet scale the cache is large (1.28 M images at 256 px is
~250 GB); pass ``--no-cache`` there, or point ``cache_dir`` at a big disk.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from condpretrain.data.images import load_rgb
from condpretrain.errors import UnreadableImageError
from condpretrain.log import get_logger, progress_bar

log = get_logger(__name__)


def stored_size(resolution: int) -> int:
    """Side of the stored square: 256/224 of the training resolution (256 for 224, 128
    for 112), the usual margin that random-resized crops and the centre crop take from."""
    return int(round(resolution * 256 / 224))


def preresize(image: Image.Image, size: int) -> torch.Tensor:
    """uint8 ``3 x size x size``: bilinear short-side resize, then the centre square."""
    tensor = v2.functional.pil_to_tensor(image)
    tensor = v2.functional.resize(tensor, [size], interpolation=v2.InterpolationMode.BILINEAR,
                                  antialias=True)
    return v2.functional.center_crop(tensor, [size, size])


class DecodedImages:
    """Images decoded and pre-resized on every read (the ``--no-cache`` path)."""

    def __init__(self, paths: Sequence[str], size: int, max_pixels: int) -> None:
        self.paths, self.size, self.max_pixels = paths, size, max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, index: int) -> tuple[torch.Tensor, str]:
        try:
            return preresize(load_rgb(self.paths[index], self.max_pixels), self.size), ""
        except UnreadableImageError as exc:
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8), str(exc)


class CachedImages:
    """The memory-mapped cache; opened lazily so DataLoader workers each map it."""

    def __init__(self, images_file: Path, valid_file: Path) -> None:
        self.images_file, self.valid_file = images_file, valid_file
        self.valid = np.load(valid_file)
        self._images: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.valid)

    @property
    def size(self) -> int:
        return int(self._array().shape[-1])

    def _array(self) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self.images_file, mmap_mode="r")
        return self._images

    def get(self, index: int) -> tuple[torch.Tensor, str]:
        image = torch.from_numpy(np.array(self._array()[index]))
        return image, "" if self.valid[index] else "unreadable image (skipped when cached)"

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_images": None}  # workers re-map instead of pickling


def cache_files(folder: Path, paths: Sequence[str], size: int) -> tuple[Path, Path]:
    digest = hashlib.sha1(f"{size}\n".encode())
    for path in paths:
        digest.update(os.fsdecode(path).encode() + b"\n")
    key = digest.hexdigest()[:16]
    return folder / f"images-{size}px-{key}.npy", folder / f"valid-{size}px-{key}.npy"


def build_cache(
    paths: Sequence[str],
    size: int,
    folder: str | Path,
    workers: int = 0,
    max_pixels: int = 178_956_970,
    write: bool = True,
) -> CachedImages:
    """The cache of ``paths`` at ``size``, built once (by the process with ``write``)."""
    folder = Path(folder)
    images_file, valid_file = cache_files(folder, paths, size)
    if images_file.is_file() and valid_file.is_file():
        log.info("using the image cache %s", images_file)
        return CachedImages(images_file, valid_file)
    if not write:
        raise FileNotFoundError(images_file)  # another rank builds it; caller waits
    folder.mkdir(parents=True, exist_ok=True)
    tmp = images_file.with_name(f".{images_file.name}.{os.getpid()}.tmp")
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                      shape=(len(paths), 3, size, size))
    valid = np.zeros(len(paths), dtype=bool)
    loader = DataLoader(_Decode(DecodedImages(paths, size, max_pixels)), batch_size=64,
                        num_workers=workers, collate_fn=_collate)
    done = 0
    with progress_bar(len(paths), desc=f"caching {size}px", unit="img") as bar:
        for images, errors in loader:
            array[done:done + len(images)] = images.numpy()
            valid[done:done + len(images)] = [not e for e in errors]
            done += len(images)
            bar.update(len(images))
    array.flush()
    del array
    os.replace(tmp, images_file)
    from condpretrain.atomic import save_npy

    save_npy(valid_file, valid)
    bad = int((~valid).sum())
    log.info("cached %d images at %dpx in %s (%d unreadable, skipped)", len(paths), size,
             images_file, bad)
    return CachedImages(images_file, valid_file)


class _Decode(Dataset):
    def __init__(self, source: DecodedImages) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        return self.source.get(index)


def _collate(items: list[tuple[torch.Tensor, str]]) -> tuple[torch.Tensor, list[str]]:
    return torch.stack([image for image, _ in items]), [error for _, error in items]
