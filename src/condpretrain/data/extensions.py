"""Which file names are images: shared by folder listing, shard indexing and decoding.

It lives on its own, below both :mod:`~condpretrain.data.images` and
:mod:`~condpretrain.data.shards`, so that decoding can read shard members and shard
indexing can recognise image members without either module importing the other.
"""

from __future__ import annotations

IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".tif", ".tiff", ".webp", ".gif",
)


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


__all__ = ["IMAGE_EXTENSIONS", "is_image_file"]
