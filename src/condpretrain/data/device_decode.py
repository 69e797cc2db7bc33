"""The pool's images at the filter resolution, decoded on the scoring device.

Scoring decodes every pool image once, and at GPU speed a few CPU cores of Pillow cannot
keep up (a ResNet-18 forward at 224 px runs thousands of images a second on one GPU). With
``--decode gpu`` the DataLoader workers only read each file's bytes and its header (size
limits, format); the JPEGs of a batch are decoded together by nvJPEG
(``torchvision.io.decode_jpeg`` on the device), resized and centre-cropped there. What
nvJPEG does not take (PNG, WebP, CMYK JPEGs, a file it fails on) is decoded by Pillow as
before, in the worker or, after a failed device decode, in the main process: the device
path changes where a file is decoded, never which files are scored. Each image is then
resized and cropped as torchvision would, without its transforms' per-image dispatch
(``resize_crop``).

Both paths resize with antialiased bilinear interpolation: Pillow's and torchvision's
kernels differ in the last bits, so scores may differ in their last digits between
``--decode cpu`` and ``gpu`` (as between AMP on and off), never the ranking of images
that differ by more than that.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as F

from condpretrain.data.extensions import DECODERS
from condpretrain.data.images import (
    ImageDataset,
    PathTable,
    check_size,
    eval_transform,
    load_rgb,
    normalize_pixels,
    read_source,
)
from condpretrain.data.resize_crop import resize_crop
from condpretrain.device import autocast, kept_on_device, on_host_one_late
from condpretrain.errors import CondPretrainError, UnreadableImageError

if TYPE_CHECKING:  # the config layer sits above the data layer
    from condpretrain.config import SelectConfig
    from condpretrain.data.sources import ImageIndex

# The Pillow modes nvJPEG decodes to RGB the way Pillow's convert("RGB") does.
_DEVICE_MODES = ("RGB", "L")


def decode_device(choice: str, device: torch.device) -> torch.device | None:
    """Where ``--decode CHOICE`` decodes when scoring on ``device``: the device itself
    (gpu, or auto on CUDA), or None for Pillow in the DataLoader workers."""
    if choice == "gpu" and device.type != "cuda":
        raise CondPretrainError(f"--decode gpu: scoring runs on {device.type}, not CUDA; "
                                "use --decode cpu or auto")
    if choice == "cpu" or (choice == "auto" and device.type != "cuda"):
        return None
    return device


class EncodedDataset(Dataset):
    """Yields ``(item, index, error)``: ``item`` is a JPEG's bytes (a 1-D uint8 tensor)
    for the device to decode, or the image already decoded by Pillow at ``resolution``
    (``3 x R x R`` uint8) for any other file; an empty tensor and the reason for a file
    that cannot be read."""

    def __init__(self, paths: Sequence[str], resolution: int, max_pixels: int) -> None:
        self.paths = PathTable(paths)
        self.resolution = resolution
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        path = self.paths[index]
        try:
            data = read_source(path)
            if _device_decodable(path, data, self.max_pixels):
                return torch.frombuffer(bytearray(data), dtype=torch.uint8), index, ""
            return cpu_pixels(path, self.resolution, self.max_pixels), index, ""
        except UnreadableImageError as exc:
            return torch.empty(0, dtype=torch.uint8), index, str(exc)


def _device_decodable(path: str, data: bytes, max_pixels: int) -> bool:
    """A JPEG nvJPEG decodes like Pillow, within the size limits (which raise here, so an
    oversized file never reaches either decoder). A header Pillow cannot read goes to
    Pillow's full decode, whose error message the run records, as without the device."""
    try:
        with Image.open(io.BytesIO(data), formats=DECODERS) as image:  # the header only
            size, is_plain_jpeg = image.size, (image.format == "JPEG"
                                               and image.mode in _DEVICE_MODES)
    except Exception:  # noqa: BLE001  (untrusted bytes: any error; see load_rgb)
        return False
    check_size(path, *size, max_pixels)
    return is_plain_jpeg


def cpu_pixels(path: str, resolution: int, max_pixels: int) -> torch.Tensor:
    """Pillow's decode, resized (short side) and centre-cropped: ``3 x R x R`` uint8."""
    image = F.pil_to_tensor(load_rgb(path, max_pixels))
    return F.center_crop(F.resize(image, resolution, antialias=True), resolution)


@dataclass
class Batch:
    """A batch of the pool on the device: normalised images of the good rows, every row's
    index, and the reason (empty when good) for each."""

    images: torch.Tensor
    rows: np.ndarray
    errors: list[str]

    @property
    def good(self) -> np.ndarray:
        return np.array([not e for e in self.errors], dtype=bool)


def _collate(samples: list[tuple[torch.Tensor, int, str]]) -> tuple[list, list, list]:
    items, rows, errors = zip(*samples, strict=True)
    return list(items), list(rows), list(errors)


def scoring_batches(index: ImageIndex, config: SelectConfig, device: torch.device
                    ) -> Iterator[Batch]:
    """``index``'s images at the filter resolution on ``device``, decoded where
    ``--decode`` says (the GPU's nvJPEG or Pillow in the workers)."""
    return pool_batches(index.paths, resolution=config.filter_resolution,
                        batch_size=config.batch_size, workers=config.workers,
                        max_pixels=config.max_image_pixels, device=device,
                        decode_on=decode_device(config.decode, device))


def mapped_batches(index: ImageIndex, config: SelectConfig, device: torch.device,
                   fn: Callable[[torch.Tensor], torch.Tensor]
                   ) -> Iterator[tuple[Batch, np.ndarray | None]]:
    """Every batch of :func:`scoring_batches` with ``fn`` of its good images (float32,
    under ``--amp``'s autocast) on the host, or None where none was readable. Results
    are read one batch late (:func:`~condpretrain.device.on_host_one_late`), so the
    device computes one batch while the host decodes the next."""
    def on_device() -> Iterator[tuple[Batch, torch.Tensor | None]]:
        for batch in scoring_batches(index, config, device):
            if not batch.good.any():
                yield batch, None
                continue
            with autocast(device, config.amp):
                values = fn(batch.images)
            yield batch, values.float()
    return on_host_one_late(on_device())


def pool_batches(paths: Sequence[str], *, resolution: int, batch_size: int, workers: int,
                 max_pixels: int, device: torch.device, decode_on: torch.device | None
                 ) -> Iterator[Batch]:
    """The images of ``paths`` at ``resolution`` in order, ``batch_size`` at a time, on
    ``device``: decoded there when ``decode_on`` (see :func:`decode_device`), by Pillow
    in the DataLoader workers otherwise."""
    if decode_on is not None:
        yield from device_batches(paths, resolution=resolution, batch_size=batch_size,
                                  workers=workers, max_pixels=max_pixels, device=decode_on)
        return
    dataset = ImageDataset(paths, eval_transform(resolution), max_pixels=max_pixels)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda")
    for images, _, rows, errors in loader:
        batch = Batch(images, rows.numpy(), list(errors))
        batch.images = kept_on_device(images, torch.from_numpy(batch.good), device)
        yield batch


def device_batches(paths: Sequence[str], *, resolution: int, batch_size: int, workers: int,
                   max_pixels: int, device: torch.device) -> Iterator[Batch]:
    """The images of ``paths`` in order, ``batch_size`` at a time, decoded on ``device``.
    ``Batch.images`` holds the good rows only (``Batch.good`` says which)."""
    dataset = EncodedDataset(paths, resolution, max_pixels)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=_collate, pin_memory=device.type == "cuda")
    for items, rows, errors in loader:
        yield _decode(items, np.asarray(rows, dtype=np.int64), errors, dataset, device)


def _decode(items: list[torch.Tensor], rows: np.ndarray, errors: list[str],
            dataset: EncodedDataset, device: torch.device) -> Batch:
    size = dataset.resolution
    jpegs = [i for i, item in enumerate(items) if not errors[i] and item.dim() == 1]
    decoded = dict(zip(jpegs, _decode_jpegs([items[i] for i in jpegs], device), strict=True))
    images = []
    for i, item in enumerate(items):
        if errors[i]:
            continue
        image = decoded.get(i) if i in decoded else item.to(device, non_blocking=True)
        if image is None:  # nvJPEG refused it: Pillow's verdict decides
            try:
                image = cpu_pixels(dataset.paths[rows[i]], size, dataset.max_pixels).to(device)
            except UnreadableImageError as exc:
                errors[i] = str(exc)
                continue
        images.append(image)
    resized = (resize_crop(images, size) if images
               else torch.empty(0, 3, size, size, device=device))
    return Batch(_normalise(resized), rows, errors)


def _decode_jpegs(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    """nvJPEG's batched decode; on an error, one file at a time (None for a failure)."""
    if not data:
        return []
    try:
        return list(_decode_call(data, device))
    except RuntimeError:
        out: list[torch.Tensor | None] = []
        for one in data:
            try:
                out.append(_decode_call([one], device)[0])
            except RuntimeError:
                out.append(None)
        return out


def _decode_call(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    with warnings.catch_warnings():
        # torchvision 0.29 announces TorchCodec as the successor of its decoders, on
        # every call; decode_jpeg is still there and the one batched GPU decoder we have.
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device,
                           apply_exif_orientation=True)


def _normalise(images: torch.Tensor) -> torch.Tensor:
    images = images.round().clamp(0, 255)  # the uint8 values Pillow's resize would give
    out = normalize_pixels(images)
    if out.device.type == "cuda":
        out = out.contiguous(memory_format=torch.channels_last)
    return out


__all__ = ["Batch", "EncodedDataset", "cpu_pixels", "decode_device", "device_batches",
           "mapped_batches", "pool_batches", "scoring_batches"]
