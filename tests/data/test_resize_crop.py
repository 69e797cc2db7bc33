"""The scoring path's resize-and-crop is torchvision's resize(S, antialias=True) +
center_crop(S) of the image in float, to the bit, whatever the image's size."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as F

from condpretrain.data.resize_crop import crop_anchor, resize_crop, resized_size

# Landscape and portrait photos, a square, upscales, one-pixel strips, odd sides, a photo
# larger than the rest and images already at the output size.
SHAPES = [(375, 500), (500, 375), (500, 333), (333, 500), (224, 224), (100, 60), (1, 300),
          (300, 1), (223, 225), (480, 640), (1200, 900), (64, 64), (32, 32), (600, 227)]


def _images(shapes, seed=0, channels=3):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (channels, h, w), dtype=torch.uint8, generator=generator)
            for h, w in shapes]


def _torchvision(image, size):
    return F.center_crop(F.resize(image.float(), size, antialias=True), size)


@pytest.mark.parametrize("size", [32, 224])
def test_every_image_is_torchvisions_resize_and_centre_crop(size):
    images = _images(SHAPES)
    out = resize_crop(images, size)
    assert out.shape == (len(images), 3, size, size) and out.dtype == torch.float32
    for image, got in zip(images, out, strict=True):
        assert torch.equal(got, _torchvision(image, size)), image.shape


def test_sizes_and_crops_follow_torchvision():
    for height, width in SHAPES:
        image = torch.zeros(1, height, width)
        assert resized_size(height, width, 224) == tuple(F.resize(image, 224).shape[-2:])
    # torchvision's anchor rounds half to even: (17 - 10) / 2 = 3.5 -> 4, 2.5 -> 2
    assert crop_anchor(17, 10) == 4 and crop_anchor(15, 10) == 2


def test_images_at_the_output_size_pass_through_unchanged():
    images = _images([(40, 40)] * 3)
    assert torch.equal(resize_crop(images, 40), torch.stack(images).float())


def test_grey_and_float_inputs():
    grey = _images([(50, 70), (90, 30)], channels=1)
    out = resize_crop(grey, 24)
    assert out.shape == (2, 1, 24, 24) and torch.equal(out[1], _torchvision(grey[1], 24))
    floats = [image.float() / 255 for image in _images([(50, 70)])]
    assert torch.equal(resize_crop(floats, 24)[0], _torchvision(floats[0], 24))


def test_an_empty_batch_is_refused():
    with pytest.raises(ValueError, match="no images"):
        resize_crop([], 32)
