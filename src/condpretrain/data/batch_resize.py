"""Resize (short side) and centre-crop a batch of images of many sizes in a few kernels.

Scoring on a GPU decodes a batch of JPEGs with nvJPEG into as many image sizes as there
are files. Resizing them one at a time costs, per image, a pass through torchvision's
dispatch and a chain of small kernels (to float, resize, copy into the batch): at the
thousands of images a second nvJPEG decodes, that host-side work per image, not the GPU,
would set the pace.

Antialiased bilinear resizing is linear and separable, so resizing one image and cropping
its centre is ``Wy @ X @ Wx.T`` per channel: ``Wy`` (S x H) and ``Wx`` (S x W) hold the
rows of the resize weights that survive the crop. The weights are the triangle filter
that ``interpolate(..., antialias=True)`` (and Pillow) use, widened by the scale when
shrinking. Images of similar size share a bucket, zero-padded to the bucket's largest
with zero weights over the padding; each bucket is then two batched matmuls, whatever
the number of images in it. Sizes and crops follow torchvision's ``resize(S)`` and
``center_crop(S)`` exactly; the pixels match theirs up to float rounding (the sums run in
another order).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch

# Bucket edges: images whose sides round up to the same multiple share a bucket, so
# padding adds less than this many rows and columns to any image.
BUCKET_STEP = 64
# Most bytes of float32 pixels one batched matmul pads its images into; a larger bucket
# is split (a huge photo gets one of its own).
MAX_BUCKET_BYTES = 256 * 2**20


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
    """``images`` (each ``C x H x W``, any dtype and size, one device) resized, short side
    to ``size`` with antialiased bilinear interpolation, and centre-cropped: an
    ``N x C x size x size`` float32 tensor, unrounded, in the input's order."""
    if not images:
        raise ValueError("resize_crop: no images")
    channels, device = images[0].shape[0], images[0].device
    out = torch.empty(len(images), channels, size, size, dtype=torch.float32, device=device)
    # The sums must be float32 whatever the caller's autocast says: under bf16 the pixels
    # would come out a few grey levels off.
    with torch.autocast(device.type, enabled=False):
        for members in _buckets([image.shape[-2:] for image in images], channels):
            out[torch.tensor(members, device=device)] = _resize_bucket(
                [images[i] for i in members], size)
    return out


def _buckets(shapes: Sequence[tuple[int, int]], channels: int) -> list[list[int]]:
    """Indices grouped by their sides rounded up to ``BUCKET_STEP``, each group split so
    that its padded pixels fit ``MAX_BUCKET_BYTES``."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, (height, width) in enumerate(shapes):
        groups[(-(-height // BUCKET_STEP), -(-width // BUCKET_STEP))].append(i)
    buckets = []
    for members in groups.values():
        height = max(shapes[i][0] for i in members)
        width = max(shapes[i][1] for i in members)
        per_image = channels * height * width * 4
        step = max(1, MAX_BUCKET_BYTES // per_image)
        buckets += [members[k:k + step] for k in range(0, len(members), step)]
    return buckets


def _resize_bucket(images: Sequence[torch.Tensor], size: int) -> torch.Tensor:
    device = images[0].device
    heights = [int(image.shape[-2]) for image in images]
    widths = [int(image.shape[-1]) for image in images]
    padded = torch.zeros(len(images), images[0].shape[0], max(heights), max(widths),
                         dtype=torch.float32, device=device)
    for slot, image in enumerate(images):
        padded[slot, :, :heights[slot], :widths[slot]] = image  # converts to float too
    resized = [resized_size(h, w, size) for h, w in zip(heights, widths, strict=True)]
    rows = _crop_weights(heights, [r[0] for r in resized], size, padded.shape[-2], device)
    cols = _crop_weights(widths, [r[1] for r in resized], size, padded.shape[-1], device)
    rows, cols = rows.unsqueeze(1), cols.unsqueeze(1).transpose(-1, -2)  # per channel
    # The same result either way round; the cheaper order reduces the longer side first.
    if padded.shape[-2] >= padded.shape[-1]:
        return (rows @ padded) @ cols
    return rows @ (padded @ cols)


def _crop_weights(inputs: list[int], outputs: list[int], size: int, length: int,
                  device: torch.device) -> torch.Tensor:
    """``N x size x length`` weights: row ``i`` of image ``n`` mixes its input pixels
    into output pixel ``anchor + i`` of a resize from ``inputs[n]`` to ``outputs[n]``
    (torch's antialiased bilinear filter, as ``_upsample_bilinear2d_aa`` computes it),
    with zeros beyond ``inputs[n]``."""
    anchors = [crop_anchor(o, size) for o in outputs]
    table = torch.tensor([inputs, outputs, anchors], dtype=torch.float32).to(device)
    source, target, anchor = table[0, :, None], table[1, :, None], table[2, :, None]
    scale = source / target
    support = scale.clamp(min=1.0)  # bilinear reaches one pixel, scale pixels when shrinking
    centre = scale * (anchor + torch.arange(size, device=device) + 0.5)
    pixel = torch.arange(length, device=device, dtype=torch.float32)
    distance = (pixel + 0.5 - centre[..., None]) / support[..., None]
    weights = (1.0 - distance.abs()).clamp(min=0.0) * (pixel < source[..., None])
    return weights / weights.sum(-1, keepdim=True)


__all__ = ["BUCKET_STEP", "MAX_BUCKET_BYTES", "crop_anchor", "resize_crop", "resized_size"]
