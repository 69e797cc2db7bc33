"""PSANet's training augmentation, step for step as semseg's (hszhao/semseg, tool/train.py
with config/voc2012/voc2012_psanet50.yaml; util/transform.py):

    RandScale(0.5, 2) -> RandRotate(+-10 deg, p 0.5) -> RandomGaussianBlur(5, p 0.5)
    -> RandomHorizontalFlip(p 0.5) -> Crop(rand, padded with the mean / 255, centred)

semseg runs these with OpenCV on the raw image and normalises last; here the image is
already normalised ``(x / 255 - mean) / std``. Every step is linear in the pixel values
(or moves them), so the order of the two does not matter, and semseg's padding value,
the mean colour, is exactly 0.0 here.

Every random draw comes from torch's global RNG, in semseg's order (coin, then value),
so the ``SeededDataset`` that seeds it per sample makes each sample reproducible. A
disabled step draws nothing: with rotation and blur off a seed gives the samples it gave
before they existed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from condpretrain.train.blur import separable_blur

# OpenCV's GaussianBlur(image, (5, 5), 0): with sigma 0 and an odd size up to 7,
# getGaussianKernel takes its fixed table ``small_gaussian_tab``, the binomial weights,
# not exp(-d^2 / 2 sigma^2) at the sigma it would compute.
BINOMIAL_5 = [1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16]

Pair = tuple[torch.Tensor, torch.Tensor]  # image (C x H x W float), mask (H x W int64)


@dataclass(frozen=True)
class SegmentationAugment:
    """The whole training transform of one (image, mask) pair; ``rotate`` is the largest
    angle in degrees either way (0: no rotation), ``blur`` switches the Gaussian blur."""

    crop_size: int
    scale_range: tuple[float, float] = (0.5, 2.0)
    rotate: float = 10.0
    blur: bool = True
    ignore_index: int = 255

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> Pair:
        image, mask = random_scale(image, mask, self.scale_range)
        if self.rotate > 0:
            image, mask = random_rotate(image, mask, self.rotate, self.ignore_index)
        if self.blur:
            image = random_blur(image)
        image, mask = random_hflip(image, mask)
        image, mask = pad_to(image, mask, self.crop_size, self.ignore_index)
        return random_crop(image, mask, self.crop_size)


def random_scale(image: torch.Tensor, mask: torch.Tensor,
                 scale_range: tuple[float, float]) -> Pair:
    """One factor for both sides (semseg's aspect ratio 1): bilinear image, nearest mask
    (a resampled mask must keep class indices, never blend them)."""
    scale = float(torch.empty(()).uniform_(*scale_range))
    h, w = mask.shape
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].long()
    return image, mask


def random_rotate(image: torch.Tensor, mask: torch.Tensor, max_degrees: float,
                  ignore_index: int = 255) -> Pair:
    """Half the pairs rotated by an angle uniform in ``[-max_degrees, max_degrees]``."""
    if torch.rand(()) >= 0.5:
        return image, mask
    angle = float(torch.empty(()).uniform_(-max_degrees, max_degrees))
    return rotate(image, mask, angle, ignore_index)


def rotate(image: torch.Tensor, mask: torch.Tensor, degrees: float,
           ignore_index: int = 255) -> Pair:
    """``cv2.warpAffine`` with ``cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1)``:
    counter-clockwise on screen, same size, the image bilinear with the mean colour (0.0)
    outside, the mask nearest with ``ignore_index`` outside.

    OpenCV's centre (w/2, h/2) is in pixel-index coordinates, half a pixel right of and
    below the pixel grid's centre; it is kept so that the same angle moves the same pixels.
    Deviation: OpenCV's bilinear warp rounds each source position to 1/32 pixel, torch's
    ``grid_sample`` does not."""
    grid = _rotation_grid(mask.shape[0], mask.shape[1], degrees, image.device)
    # Zero padding is a constant border of 0.0, the mean colour, blended at the edge
    # exactly as OpenCV's BORDER_CONSTANT (torchvision's ``fill`` would scale it instead).
    image = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="zeros",
                          align_corners=False)[0]
    # Shifted so that the zero padding lands on ignore_index; nearest keeps every value
    # a label of the input.
    shifted = mask[None, None].float() - ignore_index
    mask = F.grid_sample(shifted, grid, mode="nearest", padding_mode="zeros",
                         align_corners=False)[0, 0].round().long() + ignore_index
    return image, mask


def _rotation_grid(h: int, w: int, degrees: float, device: torch.device) -> torch.Tensor:
    """For every output pixel, its source point under OpenCV's rotation matrix, in
    ``grid_sample``'s coordinates (``align_corners=False``: -1 and 1 are the outer edges)."""
    radians = math.radians(degrees)
    cos, sin = math.cos(radians), math.sin(radians)
    cx, cy = w / 2, h / 2
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=device),
                            torch.arange(w, dtype=torch.float32, device=device), indexing="ij")
    dx, dy = xs - cx, ys - cy
    # OpenCV maps source to output by [[cos, sin], [-sin, cos]] about the centre; the
    # sampler needs the inverse, its transpose.
    src_x = cos * dx - sin * dy + cx
    src_y = sin * dx + cos * dy + cy
    return torch.stack(((2 * src_x + 1) / w - 1, (2 * src_y + 1) / h - 1), dim=-1)[None]


def random_blur(image: torch.Tensor) -> torch.Tensor:
    """Half the images blurred by :func:`gaussian_blur_5`; the mask is left alone."""
    if torch.rand(()) >= 0.5:
        return image
    return gaussian_blur_5(image)


def gaussian_blur_5(image: torch.Tensor) -> torch.Tensor:
    """``cv2.GaussianBlur(image, (5, 5), 0)``: the separable binomial kernel with
    BORDER_REFLECT_101 (torch's 'reflect'). Reflecting 2 pixels needs sides of 3 or more;
    a smaller image (only from a tiny input scaled down) is returned as it is."""
    if min(image.shape[-2:]) <= len(BINOMIAL_5) // 2:
        return image
    return separable_blur(image, BINOMIAL_5)


def random_hflip(image: torch.Tensor, mask: torch.Tensor) -> Pair:
    if torch.rand(()) < 0.5:
        return image.flip(-1), mask.flip(-1)
    return image, mask


def pad_to(image: torch.Tensor, mask: torch.Tensor, size: int, ignore_index: int = 255) -> Pair:
    """Sides shorter than ``size`` padded to it, centred as semseg's Crop does (``pad //
    2`` before, the rest after): the mean colour (0.0) around the image, ``ignore_index``
    around the mask."""
    h, w = mask.shape
    pad_h, pad_w = max(size - h, 0), max(size - w, 0)
    if not (pad_h or pad_w):
        return image, mask
    sides = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
    return F.pad(image, sides, value=0.0), F.pad(mask, sides, value=ignore_index)


def random_crop(image: torch.Tensor, mask: torch.Tensor, size: int) -> Pair:
    """A ``size`` square at a uniformly random offset (the pair is at least that big)."""
    top = int(torch.randint(0, mask.shape[0] - size + 1, ()))
    left = int(torch.randint(0, mask.shape[1] - size + 1, ()))
    return (image[:, top:top + size, left:left + size].contiguous(),
            mask[top:top + size, left:left + size].contiguous())


__all__ = ["BINOMIAL_5", "SegmentationAugment", "gaussian_blur_5", "pad_to", "random_blur",
           "random_crop", "random_hflip", "random_rotate", "random_scale", "rotate"]
