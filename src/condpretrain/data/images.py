"""Safe image decoding: any common mode to RGB, EXIF honoured, bad files reported.

A pool of a million web images always holds a few broken, truncated or absurdly large
files. They must cost one line in the run's metadata, not the run: decoding raises
:class:`UnreadableImageError`, and :class:`ImageDataset` turns that into a placeholder
sample flagged with the reason, which the consumer masks out.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps
from torch.utils.data import Dataset
from torchvision.transforms import v2

# The extensions are re-exported: callers have always found them here.
from condpretrain.data.extensions import IMAGE_EXTENSIONS, is_image_file  # noqa: F401
from condpretrain.data.shards import is_member_path, read_member
from condpretrain.errors import UnreadableImageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Truncated files must fail loudly rather than decode as half-grey images.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def load_rgb(path: str, max_pixels: int = 178_956_970) -> Image.Image:
    """Decode ``path`` to an RGB image or raise :class:`UnreadableImageError`."""
    try:
        with warnings.catch_warnings():
            # We enforce our own pixel limit below; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(_open_source(path)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise UnreadableImageError(
                        f"{path}: {width}x{height} pixels is over the limit of {max_pixels}"
                    )
                image = ImageOps.exif_transpose(image)
                image.load()
                return to_rgb(image)
    except UnreadableImageError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UnreadableImageError(f"{path}: {exc}") from None


def _open_source(path: str) -> str | io.BytesIO:
    """A file path, or the bytes of a member of a WebDataset shard (``x.tar#key.jpg``)."""
    return io.BytesIO(read_member(path)) if is_member_path(path) else path


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
    """

    def __init__(self, paths: Sequence[str]) -> None:
        encoded = [p.encode("utf-8") for p in paths]
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=self._offsets[1:])
        self._blob = np.frombuffer(b"".join(encoded), dtype=np.uint8) if encoded else np.zeros(0, np.uint8)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index: int) -> str:
        start, end = self._offsets[index], self._offsets[index + 1]
        return self._blob[start:end].tobytes().decode("utf-8")


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
