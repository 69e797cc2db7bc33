"""Safe image decoding: any common mode to RGB, EXIF honoured, bad files reported.

A pool of a million web images always holds a few broken, truncated or absurdly large
files. They must cost one line in the run's metadata, not the run: decoding raises
:class:`UnreadableImageError`, and :class:`ImageDataset` turns that into a placeholder
sample flagged with the reason, which the consumer masks out.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps
from torch.utils.data import Dataset
from torchvision.transforms import v2

# The extensions are re-exported: callers have always found them here.
from condpretrain.data.extensions import DECODERS, IMAGE_EXTENSIONS, is_image_file  # noqa: F401
from condpretrain.data.shards import is_member_path, read_member
from condpretrain.errors import UnreadableImageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Truncated files must fail loudly rather than decode as half-grey images.
ImageFile.LOAD_TRUNCATED_IMAGES = False

# Long side : short side accepted. The pixel limit counts source pixels, but every
# consumer resizes the short side to a few hundred pixels: a 1,000,000 x 1 PNG of a few
# hundred bytes passes the limit and would become a 224 x 224,000,000 tensor (150 GB).
# Bounding the ratio bounds what any resize makes of an image (at most 32 x R^2 pixels
# at resolution R); web banners (~10:1) and phone panoramas (~8:1) stay in.
MAX_DECODE_ASPECT = 32.0


def load_rgb(path: str, max_pixels: int = 178_956_970) -> Image.Image:
    """Decode ``path`` to an RGB image or raise :class:`UnreadableImageError`."""
    try:
        with warnings.catch_warnings():
            # We enforce our own limits below; Pillow's warnings (pixel count, corrupt
            # EXIF) would only be noise in the log of a million-image run.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)
            with Image.open(_open_source(path), formats=DECODERS) as image:
                check_size(path, *image.size, max_pixels)
                image = ImageOps.exif_transpose(image)
                image.load()
                return to_rgb(image)
    except UnreadableImageError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UnreadableImageError(f"{path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001
        # The bytes are untrusted and a decoder may fail on them in ways nobody listed
        # (struct.error, IndexError, MemoryError, ...): one skipped image, not a dead run.
        raise UnreadableImageError(f"{path}: {type(exc).__name__}: {exc}") from None


def check_size(path: str, width: int, height: int, max_pixels: int) -> None:
    """Raise :class:`UnreadableImageError` for a declared size nothing should decode."""
    if width < 1 or height < 1:
        raise UnreadableImageError(f"{path}: declares an empty {width}x{height} image")
    if width * height > max_pixels:
        raise UnreadableImageError(
            f"{path}: {width}x{height} pixels is over the limit of {max_pixels}")
    if max(width, height) > MAX_DECODE_ASPECT * min(width, height):
        raise UnreadableImageError(
            f"{path}: {width}x{height} is longer than {MAX_DECODE_ASPECT:g}:1 (the aspect limit)")


def _open_source(path: str) -> str | io.BytesIO:
    """A file path, or the bytes of a member of a WebDataset shard (``x.tar#key.jpg``).
    Only a regular file is opened: a FIFO named ``x.jpg`` would block the run for ever,
    ``/dev/zero`` would feed it without end."""
    if is_member_path(path):
        return io.BytesIO(read_member(path))
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise UnreadableImageError(f"{path}: not a regular file")
    return path


def read_source(path: str) -> bytes:
    """The bytes of ``path`` (a regular file or a shard member), or
    :class:`UnreadableImageError`: what a decoder elsewhere (the GPU's) is handed."""
    try:
        source = _open_source(path)
        if isinstance(source, io.BytesIO):
            return source.getvalue()
        with open(source, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise UnreadableImageError(f"{path}: {exc}") from None


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I"):
        # 16/32-bit greyscale: Pillow's convert("RGB") clips instead of scaling.
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 1.0)
        array = np.clip(array / peak * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(array).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def normalize_pixels(images: torch.Tensor) -> torch.Tensor:
    """Float pixels in 0-255 -> ImageNet-normalised, on their own device and in their own
    memory format (what the training batches and the device-decoded scoring batches share)."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1) * 255
    return (images - mean) / std


def eval_transform(resolution: int) -> v2.Compose:
    """Bilinear resize of the short side, centre crop: the whole image at ``resolution``."""
    return v2.Compose([
        v2.PILToTensor(),
        v2.Resize(resolution, interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
        v2.CenterCrop(resolution),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def train_transform(resolution: int) -> v2.Compose:
    """The standard ImageNet crop/flip augmentation at ``resolution``."""
    return v2.Compose([
        v2.PILToTensor(),
        v2.RandomResizedCrop(resolution, interpolation=v2.InterpolationMode.BILINEAR,
                             antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


class PathTable:
    """Paths packed in one UTF-8 buffer plus offsets.

    A list of a million Python strings is copied page by page into every DataLoader
    worker as reference counts are touched; two numpy arrays are shared for free.
    A name that is not valid UTF-8 (Python holds its bytes as surrogate escapes) comes
    back as it went in.
    """

    def __init__(self, paths: Sequence[str]) -> None:
        encoded = [p.encode("utf-8", "surrogateescape") for p in paths]
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=self._offsets[1:])
        self._blob = np.frombuffer(b"".join(encoded), dtype=np.uint8) if encoded else np.zeros(0, np.uint8)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index: int) -> str:
        start, end = self._offsets[index], self._offsets[index + 1]
        return self._blob[start:end].tobytes().decode("utf-8", "surrogateescape")


class ImageDataset(Dataset):
    """Decodes ``paths`` lazily; yields ``(image, label, index, error)``.

    ``error`` is ``""`` for a good sample. A bad file yields a zero-filled placeholder
    of the right shape and the reason, so batches keep their shape and the run goes on.
    """

    def __init__(
        self,
        paths: Sequence[str],
        transform: Callable[[Image.Image], torch.Tensor],
        labels: Sequence[int] | np.ndarray | None = None,
        max_pixels: int = 178_956_970,
    ) -> None:
        self.paths = PathTable(paths)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.transform = transform
        self.max_pixels = max_pixels
        self._placeholder: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, str]:
        label = -1 if self.labels is None else int(self.labels[index])
        try:
            image = self.transform(load_rgb(self.paths[index], self.max_pixels))
            return image, label, index, ""
        except UnreadableImageError as exc:
            return self.placeholder(), label, index, str(exc)

    def placeholder(self) -> torch.Tensor:
        if self._placeholder is None:
            self._placeholder = torch.zeros_like(self.transform(Image.new("RGB", (8, 8))))
        return self._placeholder
