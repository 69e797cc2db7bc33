"""MoCo-v2's colour augmentations applied on the training device, a whole batch at once
(``pretrain --moco-augment-on device``).

In the loader's workers a 224 px MoCo view costs ~6 ms of one core, most of it the colour
jitter (its hue shift above all) and the blur (``bench/augment.py``): 14 workers feed at most
~1,000-1,260 images a second, fewer than a GPU trains. With this option the workers only
crop and flip each view and draw its colour parameters (with the same probabilities and
ranges as torchvision's transforms, from the sample's seeded RNG); the training step
applies them to the batch on the device.

The operations are torchvision's float formulas (``adjust_brightness``, ``_contrast``,
``_saturation``, ``_hue``, ``rgb_to_grayscale``, ``gaussian_blur``), each sample with its
own factors, jitter order and sigma. Two differences from the worker path: the pixels
stay float between the steps (torchvision rounds uint8 images after each one), and the
flip comes before the colour steps rather than after (every step treats the image's left
and right alike, so the distribution of views is the same).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F
from torchvision.transforms import v2

from condpretrain.train.blur import gaussian_kernels

# One view's parameters, in this order (a float32 row).
JITTER, BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3, 4
ORDER = slice(5, 9)  # the four jitter steps' order, a permutation of 0-3 as torchvision's
HUE_STEP = 3  # in that order: brightness 0, contrast 1, saturation 2, hue 3
GREY, BLUR, SIGMA = 9, 10, 11
WIDTH = 12
GREY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale


def blur_kernel_size(resolution: int) -> int:
    """MoCo-v2's blur spans ~10 % of the side (23 px at 224), odd."""
    return max(3, int(0.1 * resolution) // 2 * 2 + 1)


def blur_sigma(resolution: int) -> tuple[float, float]:
    """MoCo-v2's sigma range, (0.1, 2.0) for 224 px crops, scaled with the resolution so
    that a blur removes the same share of the image's detail at any resolution."""
    return 0.1 * resolution / 224, 2.0 * resolution / 224


class CropAndDraw:
    """The worker's part: MoCo-v2's crop (scale 0.2-1) and flip of a uint8 image, and the
    view's colour parameters: ``(view, params)``."""

    def __init__(self, resolution: int) -> None:
        self.geometry = v2.Compose([
            v2.RandomResizedCrop(resolution, scale=(0.2, 1.0),
                                 interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
            v2.RandomHorizontalFlip()])
        self.sigma = blur_sigma(resolution)

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.geometry(image), draw_params(self.sigma)


def draw_params(sigma: tuple[float, float]) -> torch.Tensor:
    """One view's colour parameters, from torch's RNG: jitter (p 0.8; brightness, contrast,
    saturation 0.6-1.4, hue -0.1-0.1, a random order), greyscale (p 0.2), blur (p 0.5;
    sigma uniform in ``sigma``): MoCo-v2's settings."""
    params = torch.zeros(WIDTH)
    params[JITTER] = float(torch.rand(1) < 0.8)
    params[BRIGHTNESS:SATURATION + 1] = torch.empty(3).uniform_(0.6, 1.4)
    params[HUE] = torch.empty(1).uniform_(-0.1, 0.1)
    params[ORDER] = torch.randperm(4).float()
    params[GREY] = float(torch.rand(1) < 0.2)
    params[BLUR] = float(torch.rand(1) < 0.5)
    params[SIGMA] = torch.empty(1).uniform_(*sigma)
    return params


def apply(images: torch.Tensor, params: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``images`` (``B x 3 x H x W``, float in 0-1) with each row of ``params`` (``B x
    WIDTH``, on their device) applied: jitter, greyscale, blur; float in 0-1."""
    with torch.autocast(images.device.type, enabled=False):  # colour maths in float32
        params = params.float()
        images = _jitter(images.float(), params)
        grey = _grey(images).expand_as(images)
        images = torch.where(params[:, GREY].bool().view(-1, 1, 1, 1), grey, images)
        blurred = _blur(images, params[:, SIGMA], kernel_size)
        return torch.where(params[:, BLUR].bool().view(-1, 1, 1, 1), blurred, images)


def _jitter(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Each sample's four jitter steps in its own order, without reading the order on the
    host: the steps before its hue shift, the hue shift (one pass over the batch, the
    costly step), the steps after it. Brightness, contrast and saturation are each a blend
    (with black, the grey mean, the grey image), so a round of them is one blend in
    which a sample with nothing to do blends with factor 1 and stays exactly as it is."""
    jittered = params[:, JITTER].bool()
    order = params[:, ORDER].long()
    hue_at = (order == HUE_STEP).long().argmax(dim=1)  # where each sample's hue shift falls
    for position in range(3):
        images = _blend_round(images, params, order[:, position],
                              jittered & (position < hue_at))
    shifted = _hue(images, params[:, HUE].view(-1, 1, 1, 1))
    images = torch.where(jittered.view(-1, 1, 1, 1), shifted, images)
    for position in range(1, 4):
        images = _blend_round(images, params, order[:, position],
                              jittered & (position > hue_at))
    return images


def _blend_round(images: torch.Tensor, params: torch.Tensor, step: torch.Tensor,
                 active: torch.Tensor) -> torch.Tensor:
    """The ``active`` samples' brightness, contrast or saturation step (``step`` 0-2), as
    torchvision blends them; the others unchanged."""
    grey = _grey(images)
    kind = step.view(-1, 1, 1, 1)
    other = torch.where(kind == 0, torch.zeros_like(grey),
                        torch.where(kind == 1, grey.mean(dim=(1, 2, 3), keepdim=True), grey))
    factor = params[:, BRIGHTNESS:SATURATION + 1].gather(1, step.clamp(max=2).view(-1, 1))
    factor = torch.where(active.view(-1, 1), factor, torch.ones_like(factor))
    return _blend(images, other, factor.view(-1, 1, 1, 1))


def _grey(images: torch.Tensor) -> torch.Tensor:
    red, green, blue = images.unbind(1)
    return (GREY_WEIGHTS[0] * red + GREY_WEIGHTS[1] * green
            + GREY_WEIGHTS[2] * blue).unsqueeze(1)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (factor * images + (1.0 - factor) * other).clamp(0.0, 1.0)


def _hue(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Shift the HSV hue by ``factor`` turns: torchvision's RGB -> HSV -> RGB, as one
    formula (the output channel n of sextant-hue h is ``v - c * clamp(min(k, 4 - k), 0, 1)``,
    ``k = (n + h) mod 6``, c the chroma)."""
    top, _ = images.max(dim=1, keepdim=True)
    bottom, _ = images.min(dim=1, keepdim=True)
    chroma = top - bottom
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    red, green, blue = images.split(1, dim=1)
    sextant = torch.where(top == red, (green - blue) / safe,
                          torch.where(top == green, 2.0 + (blue - red) / safe,
                                      4.0 + (red - green) / safe))
    sextant = torch.where(chroma > 0, sextant, torch.zeros_like(sextant))
    shifted = (sextant + 6.0 * factor).remainder(6.0)
    offsets = torch.tensor([5.0, 3.0, 1.0], device=images.device).view(1, 3, 1, 1)
    k = (offsets + shifted).remainder(6.0)
    return top - chroma * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)


def _blur(images: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Each image blurred with its own sigma: torchvision's 1-D kernel, a row and a
    column pass as grouped convolutions over the batch (reflect padding)."""
    batch, channels, height, width = images.shape
    weights = gaussian_kernels(kernel_size, sigma).repeat_interleave(channels, dim=0)
    half = kernel_size // 2
    flat = images.reshape(1, batch * channels, height, width)
    flat = F.conv2d(F.pad(flat, [half, half, 0, 0], mode="reflect"),
                    weights.view(-1, 1, 1, kernel_size), groups=batch * channels)
    flat = F.conv2d(F.pad(flat, [0, 0, half, half], mode="reflect"),
                    weights.view(-1, 1, kernel_size, 1), groups=batch * channels)
    return flat.view(batch, channels, height, width)


__all__ = ["WIDTH", "CropAndDraw", "apply", "blur_kernel_size", "blur_sigma", "draw_params"]
