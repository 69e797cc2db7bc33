"""Which file names are images: shared by folder listing, shard indexing and decoding.

It lives on its own, below both :mod:`~condpretrain.data.images` and
:mod:`~condpretrain.data.shards`, so that decoding can read shard members and shard
indexing can recognise image members without either module importing the other.
"""

from __future__ import annotations

IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".tif", ".tiff", ".webp", ".gif",
)

# The Pillow decoders a file may reach, whatever its extension says (web images are often
# misnamed: a PNG called .jpg still decodes). Every other format Pillow knows is refused:
# a planted file must not reach an exotic decoder (EPS, for one, runs Ghostscript).
DECODERS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "PPM")


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def is_utf8(name: str) -> bool:
    """False for a name holding bytes that are not UTF-8. Linux allows any bytes in a
    file name; Python (and tarfile) hold the undecodable ones as surrogate escapes, which
    no UTF-8 output (pool.csv, subset.csv, selection.json) can write."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


__all__ = ["DECODERS", "IMAGE_EXTENSIONS", "is_image_file", "is_utf8"]
