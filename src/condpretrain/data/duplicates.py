"""Pool images that are exact or near copies of a target's evaluation images.

A pool scraped from the web holds copies of well-known test sets: the same photo,
resized, re-encoded or mirrored. Pre-training on them leaks the test split into the
features. Each image gets two cheap fingerprints:

* a perceptual hash (pHash): the signs of the 63 lowest 2-D DCT frequencies (DC left
  out) of a 32 x 32 grey thumbnail against their median, packed in a uint64; robust to
  resizing and JPEG re-encoding. The evaluation side also keeps the hash of its mirror
  image, so a flipped copy matches too;
* a 16 x 16 colour thumbnail, mean removed and L2-normalised, compared by cosine. The
  hash finds candidates; the cosine confirms them (the hash sees no colour, and many
  different images fall within a few bits of each other).

A pool image is a duplicate when both agree (Hamming <= ``HAMMING_MAX`` and cosine >=
``COSINE_MIN``, against the image or its mirror). The pool is streamed in batches
against a table of the evaluation fingerprints (``2 x M`` hashes): memory is the table
plus a batch x table-block matrix of distances, whatever the size of the pool. Flat
images (almost one colour) carry no structure to compare and are never matched.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset

from condpretrain.data.images import to_rgb
from condpretrain.data.shards import is_member_path, read_member
from condpretrain.dist import DistContext, gather
from condpretrain.log import get_logger, progress_bar

log = get_logger(__name__)

HASH_SIZE = 32  # grey thumbnail the DCT is taken of
LOW = 8  # the LOW x LOW lowest frequencies make the hash (63 bits without DC)
THUMB = 16  # colour thumbnail for the cosine check
# Measured on photo-like images (1/f colour noise, tests/dupgen.py): copies at half or a
# third of the size, twice the size, JPEG quality 5-10 or mirrored stay within 8 bits
# and above 0.96 cosine; 1,770 pairs of unrelated images were 18-38 bits apart (mean 29)
# with cosines below 0.54.
HAMMING_MAX = 10
COSINE_MIN = 0.9
FLAT_STD = 2.0 / 255  # thumbnails flatter than this are never matched
# Distances are computed for at most this many (pool, table) pairs at once.
BLOCK_PAIRS = 1 << 22


@dataclass
class Fingerprints:
    """Fingerprints of ``len(hashes)`` images; rows with ``valid`` False match nothing."""

    hashes: np.ndarray  # (n,) uint64 pHash
    mirrors: np.ndarray  # (n,) uint64 pHash of the mirrored image
    thumbs: np.ndarray  # (n, THUMB * THUMB * 3) float32 unit vectors
    mirror_thumbs: np.ndarray  # the same, of the mirrored image
    valid: np.ndarray  # (n,) bool: decoded and not flat

    def __len__(self) -> int:
        return len(self.hashes)

    @staticmethod
    def concat(parts: list[Fingerprints]) -> Fingerprints:
        return Fingerprints(*(np.concatenate([getattr(p, name) for p in parts]) for name in
                              ("hashes", "mirrors", "thumbs", "mirror_thumbs", "valid")))


@dataclass(frozen=True)
class Duplicate:
    """A pool image matched to an evaluation image."""

    pool_index: int
    eval_index: int
    hamming: int
    cosine: float
    flipped: bool  # matched the mirror image of the evaluation image


# --------------------------------------------------------------------------- fingerprints


def _dct_matrix(n: int, rows: int) -> np.ndarray:
    """The first ``rows`` rows of the orthonormal DCT-II matrix of size ``n``."""
    k = np.arange(rows)[:, None]
    x = np.arange(n)[None, :]
    matrix = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    matrix[0] /= np.sqrt(2.0)
    return matrix.astype(np.float64)


_DCT = _dct_matrix(HASH_SIZE, LOW)
_BITS = (np.uint64(1) << np.arange(LOW * LOW - 1, dtype=np.uint64))


def phash(grey: np.ndarray) -> np.ndarray:
    """(n, HASH_SIZE, HASH_SIZE) grey thumbnails -> (n,) uint64 perceptual hashes."""
    low = _DCT @ grey.astype(np.float64) @ _DCT.T  # (n, LOW, LOW)
    coefficients = low.reshape(len(grey), -1)[:, 1:]  # DC says only how bright the image is
    bits = coefficients > np.median(coefficients, axis=1, keepdims=True)
    return (bits.astype(np.uint64) * _BITS).sum(axis=1, dtype=np.uint64)


def unit_thumbs(thumbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, THUMB, THUMB, 3) uint8 -> mean-removed unit vectors, and whether each has
    enough contrast to be compared at all."""
    x = thumbs.reshape(len(thumbs), -1).astype(np.float32) / 255.0
    x -= x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    contrast = norm[:, 0] / np.sqrt(x.shape[1]) >= FLAT_STD
    return x / np.maximum(norm, 1e-12), contrast


def fingerprint(grey: np.ndarray, thumbs: np.ndarray, decoded: np.ndarray) -> Fingerprints:
    """Fingerprints of a batch of thumbnails (grey for the hash, colour for the cosine)."""
    vectors, contrast = unit_thumbs(thumbs)
    mirrored, _ = unit_thumbs(thumbs[:, :, ::-1])
    return Fingerprints(phash(grey), phash(grey[:, :, ::-1]), vectors, mirrored,
                        decoded & contrast)


def load_thumbnails(path: str, max_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """The grey hash thumbnail and the colour cosine thumbnail of one image file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        source = io.BytesIO(read_member(path)) if is_member_path(path) else path
        with Image.open(source) as image:
            if image.width * image.height > max_pixels:
                raise ValueError(f"{image.width}x{image.height} pixels")
            # JPEG decodes at 1/2..1/8 scale for free: a thumbnail needs no more.
            image.draft("RGB", (2 * HASH_SIZE, 2 * HASH_SIZE))
            rgb = to_rgb(ImageOps.exif_transpose(image))
    grey = rgb.convert("L").resize((HASH_SIZE, HASH_SIZE), Image.Resampling.BOX)
    small = rgb.resize((THUMB, THUMB), Image.Resampling.BOX)
    return np.array(grey, dtype=np.float32), np.array(small, dtype=np.uint8)


class _Thumbnails(Dataset):
    def __init__(self, paths: Sequence[str], max_pixels: int) -> None:
        self.paths = list(paths)
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, bool]:
        try:
            grey, thumb = load_thumbnails(self.paths[index], self.max_pixels)
            return grey, thumb, True
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            # Unreadable files are reported by scoring already; here they match nothing.
            return (np.zeros((HASH_SIZE, HASH_SIZE), np.float32),
                    np.zeros((THUMB, THUMB, 3), np.uint8), False)


def stream_fingerprints(paths: Sequence[str], workers: int, batch_size: int,
                        max_pixels: int, desc: str) -> Iterator[Fingerprints]:
    """Fingerprints of ``paths`` in order, one batch at a time."""
    loader = DataLoader(_Thumbnails(paths, max_pixels), batch_size=batch_size,
                        num_workers=workers, shuffle=False)
    with progress_bar(len(paths), desc=desc, unit="img") as bar:
        for grey, thumbs, decoded in loader:
            yield fingerprint(grey.numpy(), thumbs.numpy(), decoded.numpy().astype(bool))
            bar.update(len(decoded))


# --------------------------------------------------------------------------- matching


def popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(x).astype(np.int32)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.int32)
    return table[x[..., None].view(np.uint8)].sum(axis=-1)


class EvalTable:
    """The evaluation images' fingerprints, matched against batches of pool images."""

    def __init__(self, prints: Fingerprints) -> None:
        keep = np.flatnonzero(prints.valid)
        # Row 2i is evaluation image keep[i], row 2i+1 its mirror image.
        self.eval_index = np.repeat(keep, 2)
        self.flipped = np.tile([False, True], len(keep))
        self.hashes = np.stack([prints.hashes[keep], prints.mirrors[keep]], 1).reshape(-1)
        self.thumbs = np.stack([prints.thumbs[keep], prints.mirror_thumbs[keep]],
                               1).reshape(2 * len(keep), prints.thumbs.shape[1])

    def __len__(self) -> int:
        return len(self.eval_index) // 2

    def match(self, batch: Fingerprints, offset: int) -> list[Duplicate]:
        """The closest evaluation image of each duplicate in ``batch`` (pool index =
        ``offset`` + row)."""
        found: dict[int, Duplicate] = {}
        rows = np.flatnonzero(batch.valid)
        if not len(rows) or not len(self.hashes):
            return []
        step = max(1, BLOCK_PAIRS // len(rows))
        for start in range(0, len(self.hashes), step):
            block = slice(start, start + step)
            distance = popcount(batch.hashes[rows, None] ^ self.hashes[None, block])
            pool_rows, table_rows = np.nonzero(distance <= HAMMING_MAX)
            for r, t in zip(pool_rows, table_rows, strict=True):
                row, entry = int(rows[r]), start + int(t)
                cosine = float(batch.thumbs[row] @ self.thumbs[entry])
                if cosine < COSINE_MIN:
                    continue
                candidate = Duplicate(offset + row, int(self.eval_index[entry]),
                                      int(distance[r, t]), round(cosine, 4),
                                      bool(self.flipped[entry]))
                if _better(candidate, found.get(row)):
                    found[row] = candidate
        return [found[row] for row in sorted(found)]


def _better(candidate: Duplicate, current: Duplicate | None) -> bool:
    return current is None or (candidate.hamming, -candidate.cosine) < (
        current.hamming, -current.cosine)


def find_duplicates(
    pool_paths: Sequence[str],
    eval_paths: Sequence[str],
    *,
    workers: int = 0,
    batch_size: int = 256,
    max_pixels: int = 178_956_970,
    dist: DistContext | None = None,
) -> list[Duplicate]:
    """Every pool image that duplicates an evaluation image, in pool order.

    Under torchrun each rank fingerprints its own contiguous share of the pool; the
    matches (a short list) are gathered, so every rank returns the whole list.
    """
    dist = dist or DistContext()
    if not eval_paths:
        return []
    eval_prints = Fingerprints.concat(list(stream_fingerprints(
        eval_paths, workers, batch_size, max_pixels, "fingerprinting evaluation images")))
    table = EvalTable(eval_prints)
    if len(table) < len(eval_paths):
        log.info("%d of %d evaluation images are unreadable or flat: not searched for",
                 len(eval_paths) - len(table), len(eval_paths))
    start, stop = _share(len(pool_paths), dist)
    found: list[Duplicate] = []
    offset = start
    for batch in stream_fingerprints(pool_paths[start:stop], workers, batch_size, max_pixels,
                                     "searching the pool for evaluation images"):
        found += table.match(batch, offset)
        offset += len(batch)
    merged = [d for part in gather(found, dist) for d in part]
    return sorted(merged, key=lambda d: d.pool_index)


def _share(total: int, dist: DistContext) -> tuple[int, int]:
    """This rank's contiguous slice of ``total`` items."""
    per = -(-total // dist.world_size) if total else 0
    return min(total, dist.rank * per), min(total, (dist.rank + 1) * per)


__all__ = ["Duplicate", "EvalTable", "Fingerprints", "find_duplicates", "fingerprint",
           "load_thumbnails", "phash"]
