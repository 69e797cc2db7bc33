"""Resize (short side) and centre-crop decoded images to the filter resolution, as
torchvision's ``resize(S, antialias=True)`` and ``center_crop(S)`` do, to the bit, with
less host work per image.

Scoring on a GPU decodes a batch of JPEGs with nvJPEG into as many image sizes as there
are files, so the resize runs image by image. Through torchvision's transforms each image
pays for their dispatch layer (kernel lookup, checks, size arithmetic) on top of the
kernels themselves: 51-56 us of host time per image against 30-33 us here, measured on
one CPU thread with images too small for their pixels to cost anything
(``bench/resize_crop.py``). On a GPU, where kernels run asynchronously, that host time is
what a batch's resize costs the thread that decodes the next one.

A batched alternative, zero-padding images of similar size into buckets and resizing
each bucket with two matmuls of per-image filter weights, was built and measured on the
CPU: with ImageNet's spread of sizes (``bench/imagenet_like.py``'s table) a batch of 256
fell into 25 buckets and issued more ops (1,438, counted with torch.profiler) than the
per-image path (768); each bucket cost ~0.3 ms of host time, 25 of them more than this
path's whole batch (~6 ms for 256 tiny images on one thread). It was dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F


def resized_size(height: int, width: int, size: int) -> tuple[int, int]:
    """``(h, w)`` after torchvision's ``resize(size)``: the short side becomes ``size``,
    the long one keeps the aspect, truncated."""
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


def crop_anchor(resized: int, size: int) -> int:
    """The first row (or column) torchvision's ``center_crop(size)`` keeps."""
    return int(round((resized - size) / 2.0))


def resize_crop(images: Sequence[torch.Tensor], size: int) -> torch.Tensor:
    """``images`` (each ``C x H x W``, any size, one device) resized, short side to
    ``size`` with antialiased bilinear interpolation in float32, and centre-cropped: an
    ``N x C x size x size`` float32 tensor, unrounded, in order."""
    if not images:
        raise ValueError("resize_crop: no images")
    return torch.stack([_resize_crop_one(image, size) for image in images])


def _resize_crop_one(image: torch.Tensor, size: int) -> torch.Tensor:
    height, width = image.shape[-2:]
    image = image.float()
    new_height, new_width = resized_size(height, width, size)
    if (new_height, new_width) != (height, width):
        image = F.interpolate(image[None], size=(new_height, new_width), mode="bilinear",
                              align_corners=False, antialias=True)[0]
    top, left = crop_anchor(new_height, size), crop_anchor(new_width, size)
    return image[:, top:top + size, left:left + size]


__all__ = ["crop_anchor", "resize_crop", "resized_size"]
