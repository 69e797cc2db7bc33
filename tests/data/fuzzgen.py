"""Corrupted image files of every format the tool reads, for fuzzing the decoder.

Each format starts from a few valid files (several modes, sizes and encoder options),
which are then damaged in the ways real pools and hostile users damage them: truncated,
random bytes flipped, header bytes flipped, declared sizes edited (zero, huge, absurd
aspect ratios: the header patched where the format keeps its size), chunks repeated or
cut out, zero-length files and garbage behind a valid magic number. Deterministic for a
given seed. Shared by ``tests/data/test_fuzz_decode.py`` and ``bench/fuzz_decode.py``.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

FORMATS = ("jpeg", "png", "gif", "bmp", "tiff", "webp", "ppm")
EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "gif": ".gif", "bmp": ".bmp", "tiff": ".tif",
              "webp": ".webp", "ppm": ".ppm"}
# Declared sizes a header edit plants: empty, absurdly long, huge, both.
ODD_SIZES = ((0, 0), (0, 5), (1, 1), (1_000_000, 1), (1, 60_000), (65_535, 65_535),
             (40_000, 3), (20_000, 20_000), (16_383, 16_383), (2, 2))


@dataclass(frozen=True)
class Sample:
    fmt: str
    kind: str  # what was done to the file
    data: bytes


def _picture(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Smooth colour gradients plus noise: compresses like a photo, not like a flat fill."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / max(width, 1), y / max(height, 1), (x + y) / max(width + height, 1)], -1)
    pixels = np.clip(base * 200 + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "bmp": "BMP",
                        "tiff": "TIFF", "webp": "WEBP", "ppm": "PPM"}[fmt], **options)
    return buffer.getvalue()


def originals(fmt: str, rng: np.random.Generator) -> list[bytes]:
    """A handful of valid files of ``fmt``: several modes, sizes and encoder options."""
    rgb = _picture(rng, 48, 32)
    tall = _picture(rng, 9, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotated, so exif_transpose runs
    frames = [rgb, rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    variants: dict[str, list[bytes]] = {
        "jpeg": [_encode(rgb, "jpeg", quality=85), _encode(rgb, "jpeg", progressive=True),
                 _encode(rgb.convert("L"), "jpeg"), _encode(rgb.convert("CMYK"), "jpeg"),
                 _encode(tall, "jpeg", exif=exif.tobytes())],
        "png": [_encode(rgb, "png"), _encode(rgb.convert("P"), "png"),
                _encode(rgb.convert("RGBA"), "png"), _encode(rgb.convert("I;16"), "png"),
                _encode(rgb.convert("1"), "png"), _encode(tall.convert("LA"), "png"),
                _encode(rgb, "png", save_all=True, append_images=frames[1:])],  # APNG
        "gif": [_encode(rgb.convert("P"), "gif"), _encode(tall, "gif", interlace=True),
                _encode(frames[0], "gif", save_all=True, append_images=frames[1:], loop=0)],
        "bmp": [_encode(rgb, "bmp"), _encode(rgb.convert("P"), "bmp"),
                _encode(rgb.convert("1"), "bmp"), _encode(tall.convert("L"), "bmp")],
        "tiff": [_encode(rgb, "tiff"), _encode(rgb, "tiff", compression="tiff_lzw"),
                 _encode(rgb, "tiff", compression="jpeg"), _encode(rgb.convert("CMYK"), "tiff"),
                 _encode(rgb.convert("I;16"), "tiff"), _encode(rgb, "tiff", exif=exif.tobytes()),
                 _encode(frames[0], "tiff", save_all=True, append_images=frames[1:],
                         compression="packbits")],
        "webp": [_encode(rgb, "webp", quality=80), _encode(rgb, "webp", lossless=True),
                 _encode(rgb.convert("RGBA"), "webp"),
                 _encode(frames[0], "webp", save_all=True, append_images=frames[1:])],
        "ppm": [_encode(rgb, "ppm"), _encode(rgb.convert("L"), "ppm"),
                _encode(rgb.convert("1"), "ppm")],
    }
    return variants[fmt]


# ---- declared-size edits, one per format: where its header keeps width and height ----

def _png_size(data: bytes, width: int, height: int) -> bytes:
    ihdr = bytearray(data[12:29])  # "IHDR" + 13 bytes of data
    ihdr[4:12] = struct.pack(">II", width, height)
    return data[:12] + bytes(ihdr) + struct.pack(">I", zlib.crc32(bytes(ihdr))) + data[33:]


def _gif_size(data: bytes, width: int, height: int) -> bytes:
    out = bytearray(data)
    out[6:10] = struct.pack("<HH", width & 0xFFFF, height & 0xFFFF)  # logical screen
    first = out.find(b"\x2c", 13)  # first image descriptor
    if first > 0:
        out[first + 5:first + 9] = struct.pack("<HH", width & 0xFFFF, height & 0xFFFF)
    return bytes(out)


def _bmp_size(data: bytes, width: int, height: int) -> bytes:
    out = bytearray(data)
    out[18:26] = struct.pack("<ii", min(width, 2**31 - 1), min(height, 2**31 - 1))
    return bytes(out)


def _jpeg_size(data: bytes, width: int, height: int) -> bytes:
    out = bytearray(data)
    for marker in (b"\xff\xc0", b"\xff\xc2", b"\xff\xc1"):
        at = out.find(marker, 2)
        if at > 0:
            out[at + 5:at + 9] = struct.pack(">HH", height & 0xFFFF, width & 0xFFFF)
            break
    return bytes(out)


def _tiff_size(data: bytes, width: int, height: int) -> bytes:
    out = bytearray(data)
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[ifd:ifd + 2])
    for i in range(count):
        entry = ifd + 2 + 12 * i
        tag, kind = struct.unpack(order + "HH", data[entry:entry + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength
            value = width if tag == 256 else height
            if kind == 3:
                out[entry + 8:entry + 10] = struct.pack(order + "H", value & 0xFFFF)
            else:
                out[entry + 8:entry + 12] = struct.pack(order + "I", value & 0xFFFFFFFF)
    return bytes(out)


def _webp_size(data: bytes, width: int, height: int) -> bytes:
    out = bytearray(data)
    chunk = bytes(out[12:16])
    w, h = max(width - 1, 0) & 0xFFFFFF, max(height - 1, 0) & 0xFFFFFF
    if chunk == b"VP8X":
        out[24:30] = struct.pack("<I", w)[:3] + struct.pack("<I", h)[:3]
    elif chunk == b"VP8 ":
        out[26:30] = struct.pack("<HH", width & 0x3FFF, height & 0x3FFF)
    elif chunk == b"VP8L":
        bits = (w & 0x3FFF) | ((h & 0x3FFF) << 14) | (out[24] & 0xF0) << 24
        out[21:25] = struct.pack("<I", bits & 0xFFFFFFFF)
    return bytes(out)


def _ppm_size(data: bytes, width: int, height: int) -> bytes:
    magic, _, rest = data.partition(b"\n")
    _, _, rest = rest.partition(b"\n")  # the "W H" line
    return magic + f"\n{width} {height}\n".encode() + rest


RESIZERS: dict[str, Callable[[bytes, int, int], bytes]] = {
    "jpeg": _jpeg_size, "png": _png_size, "gif": _gif_size, "bmp": _bmp_size,
    "tiff": _tiff_size, "webp": _webp_size, "ppm": _ppm_size,
}


# ---- generic damage ----

def _mutate(data: bytes, fmt: str, rng: np.random.Generator) -> tuple[str, bytes]:
    kind = str(rng.choice(["truncate", "flip", "flip-header", "size", "size-and-truncate",
                           "splice", "cut", "zero", "magic-only", "garbage"],
                          p=[0.2, 0.2, 0.15, 0.15, 0.05, 0.07, 0.07, 0.02, 0.04, 0.05]))
    n = len(data)
    if kind == "truncate":
        return kind, data[:int(rng.integers(0, n))]
    if kind in ("flip", "flip-header"):
        out = bytearray(data)
        span = min(n, 64) if kind == "flip-header" else n
        for at in rng.integers(0, span, size=int(rng.integers(1, 12))):
            out[at] = int(rng.integers(0, 256))
        return kind, bytes(out)
    if kind in ("size", "size-and-truncate"):
        width, height = ODD_SIZES[int(rng.integers(len(ODD_SIZES)))]
        if rng.random() < 0.5:
            width, height = height, width
        out = RESIZERS[fmt](data, width, height)
        if kind == "size-and-truncate":
            out = out[:int(rng.integers(len(out) // 2, len(out)))]
        return f"{kind} {width}x{height}", out
    if kind == "splice":  # a run of bytes repeated: duplicated chunks, bogus lengths
        start = int(rng.integers(0, n))
        piece = data[start:start + int(rng.integers(1, 200))]
        return kind, data[:start] + piece * int(rng.integers(2, 20)) + data[start:]
    if kind == "cut":  # a run of bytes removed from the middle
        start = int(rng.integers(0, n))
        return kind, data[:start] + data[start + int(rng.integers(1, 100)):]
    if kind == "zero":
        return kind, b""
    if kind == "magic-only":
        return kind, data[:int(rng.integers(1, 16))]
    return kind, data[:16] + rng.integers(0, 256, int(rng.integers(0, 4096)), np.uint8).tobytes()


def _fix_png_crcs(data: bytes) -> bytes:
    """Recompute every chunk's CRC, so that damage reaches the decoders behind the check."""
    out, at = bytearray(data), 8
    while at + 12 <= len(out):
        (length,) = struct.unpack(">I", out[at:at + 4])
        end = at + 8 + length
        if end + 4 > len(out):
            break
        out[end:end + 4] = struct.pack(">I", zlib.crc32(bytes(out[at + 4:end])))
        at = end + 4
    return bytes(out)


def corpus(seed: int, per_format: int, formats: tuple[str, ...] = FORMATS) -> Iterator[Sample]:
    """``per_format`` damaged files of each format (plus its valid originals), seeded."""
    for fmt in formats:
        rng = np.random.default_rng([seed, FORMATS.index(fmt)])
        bases = originals(fmt, rng)
        for data in bases:
            yield Sample(fmt, "valid", data)
        for _ in range(per_format):
            kind, data = _mutate(bases[int(rng.integers(len(bases)))], fmt, rng)
            if fmt == "png" and rng.random() < 0.5:
                kind, data = f"{kind}, CRCs fixed", _fix_png_crcs(data)
            yield Sample(fmt, kind, data)


def damaged_records(seed: int, count: int) -> Iterator[Sample]:
    """Cache records (JPEG q90 4:4:4, as the cache writes them) damaged like the files:
    what a disk error in the cache's blob hands the record decoder."""
    from condpretrain.data.cache import encode_record, stored_pixels

    rng = np.random.default_rng([seed, len(FORMATS)])
    records = [encode_record(stored_pixels(_picture(rng, 40, 30).convert("RGB"), 16)),
               encode_record(stored_pixels(_picture(rng, 30, 90).convert("RGB"), 16))]
    for record in records:
        yield Sample("record", "valid", record)
    for _ in range(count):
        kind, data = _mutate(records[int(rng.integers(len(records)))], "jpeg", rng)
        yield Sample("record", kind, data)


@dataclass
class Tally:
    files: int = 0
    decoded: int = 0  # every decoder path gave pixels
    skipped: int = 0  # some path said UnreadableImageError
    escaped: int = 0  # any other exception: a bug
    seconds: float = 0.0


def decode_all(samples: Iterator[Sample], folder: str, max_pixels: int, size: int = 32
               ) -> tuple[dict[str, Tally], list[str]]:
    """Run every sample through the decoders the tool uses: ``load_rgb`` (scoring,
    features, plots) and the cache's ``prepare`` (what the cache and ``--no-cache``
    store) for files, ``decode_record`` for cache records. Returns a tally per format
    and one line per exception other than UnreadableImageError that escaped."""
    import os
    import time

    from condpretrain.data.cache import decode_record, prepare
    from condpretrain.data.images import load_rgb
    from condpretrain.errors import UnreadableImageError

    tallies: dict[str, Tally] = {}
    escapes: list[str] = []
    for i, sample in enumerate(samples):
        tally = tallies.setdefault(sample.fmt, Tally())
        started = time.perf_counter()
        path = os.path.join(folder, f"{i:06d}{EXTENSIONS.get(sample.fmt, '.jpg')}")
        if sample.fmt != "record":
            with open(path, "wb") as handle:
                handle.write(sample.data)
        calls = ([(decode_record, (sample.data,))] if sample.fmt == "record" else
                 [(load_rgb, (path, max_pixels)), (prepare, (path, size, max_pixels))])
        outcomes = []
        for call, args in calls:
            try:
                call(*args)
                outcomes.append("ok")
            except UnreadableImageError:
                outcomes.append("skipped")
            except Exception as exc:  # noqa: BLE001 - what the fuzz is looking for
                outcomes.append("escaped")
                escapes.append(f"{sample.fmt} {sample.kind}: {type(exc).__name__}: {exc}")
        if sample.fmt != "record":
            os.unlink(path)
        tally.files += 1
        tally.escaped += "escaped" in outcomes
        tally.skipped += "skipped" in outcomes and "escaped" not in outcomes
        tally.decoded += all(o == "ok" for o in outcomes)
        tally.seconds += time.perf_counter() - started
    return tallies, escapes
