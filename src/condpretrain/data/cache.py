"""Pre-resized copies of the whole of every training image, stored once as JPEG records.

Decoding full-size JPEGs every epoch can cost more than a low-resolution forward pass
saves, so a run stores its images once, at ``stored_size(resolution)`` (256 for 224):

* the **whole image** is kept, so random-resized crops reach its edges as the reference
  recipes' crops do: the short side is resized (bilinear, antialiased) to the stored
  size, the long side in proportion; an image longer than ``MAX_ASPECT`` : 1 is first
  cut to that ratio around its centre, before any resize (one longer than 32:1, such
  as a 1,000,000 x 1 file that would become a 224 x 224,000,000 tensor, is refused by
  the decoder: ``images.MAX_DECODE_ASPECT``);
* each image is one **JPEG record** (quality 90, no chroma subsampling), as FFCV stores
  ImageNet: the raw pixels of whole images at 256 px would take ~335 GB for ImageNet,
  the records ~47 GB (the README has the arithmetic and the measured decode cost);
* the records lie end to end in one flat uint8 ``images-*.npy`` that training
  memory-maps, and ``index-*.npy`` (N x 6 int64) holds each record's offset and length,
  the stored height and width, and the image's true (decoded) height and width. A
  length of 0 marks an image that could not be decoded.

:class:`DecodedImages` (the ``--no-cache`` path) does the same on every read, the JPEG
round trip included, so training from the cache and training without it see the same
pixels. The cache's name carries a hash of the paths, the size and the record format,
so a changed subset never reads a stale cache.
"""

from __future__ import annotations

import errno
import hashlib
import io
import itertools
import os
import shutil
import socket
import struct
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from condpretrain import atomic
from condpretrain.data.images import load_rgb
from condpretrain.errors import CondPretrainError, UnreadableImageError
from condpretrain.log import get_logger, progress_bar

log = get_logger(__name__)

MAX_ASPECT = 4.0  # long side : short side kept; longer images lose both ends of the long side
JPEG_QUALITY = 90
FORMAT = f"jpeg-q{JPEG_QUALITY}-444-aspect{MAX_ASPECT:g}"  # in the cache key: a new format, a new cache
UNREADABLE = "unreadable image (skipped when cached)"
# Free space asked for before a build: the records' size measured on the first batch
# (or guessed from ImageNet's, 0.42 bytes per stored pixel, when none of it decodes),
# plus this margin for the rest being larger.
SPACE_MARGIN = 1.25
PRIOR_BYTES_PER_PIXEL = 0.5
LISTED_UNREADABLE = 20  # unreadable images named one by one in the log; the rest counted

# Columns of the index table.
OFFSET, LENGTH, HEIGHT, WIDTH, ORIGINAL_HEIGHT, ORIGINAL_WIDTH = range(6)


def stored_size(resolution: int) -> int:
    """Stored short side: 256/224 of the training resolution (256 for 224, 128 for 112),
    the usual margin of the evaluation's resize-then-centre-crop."""
    return int(round(resolution * 256 / 224))


def bound_aspect(image: Image.Image, max_aspect: float = MAX_ASPECT) -> Image.Image:
    """``image``, its long side cut around the centre to at most ``max_aspect`` x the short."""
    width, height = image.size
    if width > max_aspect * height:
        keep = max(1, int(round(max_aspect * height)))
        left = (width - keep) // 2
        return image.crop((left, 0, left + keep, height))
    if height > max_aspect * width:
        keep = max(1, int(round(max_aspect * width)))
        top = (height - keep) // 2
        return image.crop((0, top, width, top + keep))
    return image


def stored_pixels(image: Image.Image, size: int) -> torch.Tensor:
    """uint8 ``3 x H x W``: the aspect-bounded whole image, short side ``size``."""
    image = bound_aspect(image)
    width, height = image.size
    scale = size / min(width, height)
    shape = [size, max(size, int(round(width * scale)))] if height <= width else \
        [max(size, int(round(height * scale))), size]
    return v2.functional.resize(v2.functional.pil_to_tensor(image), shape,
                                interpolation=v2.InterpolationMode.BILINEAR, antialias=True)


def encode_record(pixels: torch.Tensor) -> bytes:
    """One cache record: ``pixels`` (uint8 ``3 x H x W``) as a JPEG."""
    buffer = io.BytesIO()
    # 4:4:4 (no chroma subsampling): at 128 px, 4:2:0 would halve the colour detail again.
    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(buffer, "JPEG", quality=JPEG_QUALITY,
                                                          subsampling=0)
    return buffer.getvalue()


def decode_record(record: np.ndarray | bytes) -> torch.Tensor:
    """uint8 ``3 x H x W`` from one record; :class:`UnreadableImageError` when the record
    is damaged (a cache file hit by a disk error must not stop training)."""
    try:
        with Image.open(io.BytesIO(record), formats=("JPEG",)) as image:
            return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
    except Exception as exc:  # noqa: BLE001 - any decoder failure on damaged bytes
        raise UnreadableImageError(f"damaged cache record ({type(exc).__name__}: {exc})") from None


def prepare(path: str, size: int, max_pixels: int) -> tuple[bytes, tuple[int, ...]]:
    """The record of the image at ``path`` and its shape: stored (height, width), then
    true (height, width). Raises :class:`UnreadableImageError`."""
    image = load_rgb(path, max_pixels)
    pixels = stored_pixels(image, size)
    return encode_record(pixels), (*pixels.shape[1:], image.height, image.width)


class DecodedImages:
    """Images decoded and stored-then-read again on every read (the ``--no-cache`` path)."""

    build_seconds = 0.0  # nothing built: decoding is paid inside the training time

    def __init__(self, paths: Sequence[str], size: int, max_pixels: int) -> None:
        self.paths, self.size, self.max_pixels = paths, size, max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, index: int) -> tuple[torch.Tensor, str]:
        try:
            record, _ = prepare(self.paths[index], self.size, self.max_pixels)
            return decode_record(record), ""
        except UnreadableImageError as exc:
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8), str(exc)


class CachedImages:
    """The memory-mapped records; the blob is mapped lazily so DataLoader workers each
    map it. ``build_seconds``: how long this process spent building it (0 when reused)."""

    def __init__(self, images_file: Path, index_file: Path, size: int,
                 build_seconds: float = 0.0) -> None:
        self.images_file, self.index_file, self.size = images_file, index_file, size
        self.table = np.load(index_file)
        self.valid = self.table[:, LENGTH] > 0
        self.build_seconds = build_seconds
        self._blob: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.table)

    def _records(self) -> np.ndarray:
        if self._blob is None:
            self._blob = np.load(self.images_file, mmap_mode="r")
        return self._blob

    def get(self, index: int) -> tuple[torch.Tensor, str]:
        if not self.valid[index]:
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8), UNREADABLE
        start, length = int(self.table[index, OFFSET]), int(self.table[index, LENGTH])
        try:
            return decode_record(self._records()[start:start + length]), ""
        except UnreadableImageError as exc:
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8), str(exc)

    def original_size(self, index: int) -> tuple[int, int]:
        """The true (height, width) of image ``index`` as decoded (0, 0 when unreadable)."""
        row = self.table[index]
        return int(row[ORIGINAL_HEIGHT]), int(row[ORIGINAL_WIDTH])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_blob": None}  # workers re-map instead of pickling


def cache_files(folder: Path, paths: Sequence[str], size: int) -> tuple[Path, Path]:
    digest = hashlib.sha1(f"{FORMAT}\n{size}\n".encode())
    for path in paths:
        digest.update(os.fsencode(path) + b"\n")  # bytes: a non-UTF-8 name hashes too
    key = digest.hexdigest()[:16]
    return folder / f"images-{size}px-{key}.npy", folder / f"index-{size}px-{key}.npy"


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
    images_file, index_file = cache_files(folder, paths, size)
    if images_file.is_file() and index_file.is_file():
        log.info("using the image cache %s", images_file)
        return CachedImages(images_file, index_file, size)
    if not write:
        raise FileNotFoundError(images_file)  # another rank builds it; caller waits
    started = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(folder)
    tmp = images_file.with_name(f".{images_file.name}.{os.getpid()}@{socket.gethostname()}.tmp")
    try:
        table = _write_records(tmp, paths, size, workers, max_pixels)
        atomic.save_npy(index_file, table)  # first: the blob appearing is what marks the cache done
        os.replace(tmp, images_file)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise CondPretrainError(f"{folder}: the disk filled up while the image cache was "
                                f"written ({exc.strerror}); free space there or give another "
                                "--cache-dir") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    total, bad = int(table[:, LENGTH].sum()), int((table[:, LENGTH] == 0).sum())
    log.info("cached %d images at %dpx in %s (%.1f MB, %d unreadable, skipped)", len(paths),
             size, images_file, total / 1e6, bad)
    return CachedImages(images_file, index_file, size, time.monotonic() - started)


def _write_records(tmp: Path, paths: Sequence[str], size: int, workers: int,
                   max_pixels: int) -> np.ndarray:
    """Write the records end to end into the ``.npy`` ``tmp``; return the index table."""
    table = np.zeros((len(paths), 6), dtype=np.int64)
    loader = DataLoader(_Prepare(paths, size, max_pixels), batch_size=64, num_workers=workers,
                        collate_fn=_as_list)
    batches: Iterator[list] = iter(loader)
    first = next(batches, [])
    # Before the first byte is written: a disk that fills up mid-build leaves a run that
    # failed late; say so now, with the sizes.
    require_space(tmp.parent, estimate_bytes([r for r, _, _ in first], len(paths), size))
    done = offset = 0
    unreadable: list[str] = []
    # A plain file, written in order (never a memory map): a full disk is an OSError
    # (ENOSPC) the caller turns into one line and a removed temp file, not a SIGBUS.
    with open(tmp, "wb") as out, progress_bar(len(paths), desc=f"caching {size}px",
                                              unit="img") as bar:
        out.write(_blob_header(0))  # rewritten once the length is known
        for batch in itertools.chain([first], batches):
            for record, shape, error in batch:
                if record:
                    table[done] = (offset, len(record), *shape)
                    out.write(record)
                    offset += len(record)
                else:
                    unreadable.append(error)
                done += 1
            bar.update(len(batch))
        _log_unreadable(unreadable)
        out.seek(0)
        out.write(_blob_header(offset))
        out.flush()
        os.fsync(out.fileno())
    return table


_HEADER_BYTES = 128  # a multiple of 64, as numpy aligns its own headers


def _blob_header(length: int) -> bytes:
    """A version 1.0 ``.npy`` header for ``length`` uint8 values, always 128 bytes long, so
    the records can be streamed after it before their total length is known."""
    text = f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({length},), }}"
    text = text.ljust(_HEADER_BYTES - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def estimate_bytes(records: Sequence[bytes], count: int, size: int) -> int:
    """Generous size of a cache of ``count`` images at ``size`` from a sample of its
    ``records`` (b"" for an unreadable image): their mean length, with a margin."""
    good = [len(r) for r in records if r]
    per_image = sum(good) / len(good) if good else PRIOR_BYTES_PER_PIXEL * size * size * 4 / 3
    index_bytes = 6 * 8 * count
    return int(SPACE_MARGIN * per_image * count) + index_bytes + _HEADER_BYTES


def require_space(folder: Path, needed: int) -> None:
    """A one-line :class:`CondPretrainError` when ``folder``'s disk has not ``needed`` bytes."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise CondPretrainError(
            f"{folder}: the image cache needs about {_gb(needed)} and the disk has "
            f"{_gb(free)} free; free space there, give another --cache-dir or use --no-cache")


def _gb(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e7 else f"{size / 1e6:.2f} MB"


def _log_unreadable(errors: list[str]) -> None:
    """Name the images the cache could not store (each is skipped by training)."""
    for error in errors[:LISTED_UNREADABLE]:
        log.warning("skipped, unreadable: %s", error)
    if len(errors) > LISTED_UNREADABLE:
        log.warning("... and %d more unreadable images skipped", len(errors) - LISTED_UNREADABLE)


def remove_stale_temps(folder: Path, max_age_s: float = 86_400.0) -> list[Path]:
    """Delete the temp files of builds that were killed: this host's, whose process is
    gone, and any other host's left untouched for ``max_age_s`` (a live build writes to
    its file all the time). Returns what was deleted."""
    removed = []
    host = socket.gethostname()
    for tmp in folder.glob(".images-*.npy.*.tmp"):
        owner = tmp.name[:-len(".tmp")].split(".npy.", 1)[-1]
        pid, _, where = owner.partition("@")  # older builds wrote "PID" alone
        try:
            idle = time.time() - tmp.stat().st_mtime
        except FileNotFoundError:
            continue
        mine = where in ("", host)
        if (mine and pid.isdigit() and not _alive(int(pid))) or idle > max_age_s:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    if removed:
        log.info("removed %d temp file(s) of killed cache builds in %s", len(removed), folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OverflowError:
        return False  # no process has such a number
    except PermissionError:
        return True  # another user's process: leave its file alone
    return True


class _Prepare(Dataset):
    def __init__(self, paths: Sequence[str], size: int, max_pixels: int) -> None:
        self.paths, self.size, self.max_pixels = paths, size, max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[bytes, tuple[int, ...], str]:
        try:
            return (*prepare(self.paths[index], self.size, self.max_pixels), "")
        except UnreadableImageError as exc:
            return b"", (), str(exc)


def _as_list(items: list) -> list:
    return items
