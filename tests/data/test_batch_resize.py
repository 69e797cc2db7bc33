"""The batched resize-and-crop gives torchvision's resize(S) + center_crop(S), image by
image, up to float rounding, whatever the mix of sizes, buckets and autocast."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as F

from condpretrain.data import batch_resize
from condpretrain.data.batch_resize import crop_anchor, resize_crop, resized_size

# Landscape and portrait photos, a square, upscales, one-pixel strips, odd sides, a photo
# larger than the rest and images already at the output size.
SHAPES = [(375, 500), (500, 375), (500, 333), (333, 500), (224, 224), (100, 60), (1, 300),
          (300, 1), (223, 225), (480, 640), (1200, 900), (64, 64), (32, 32), (600, 227)]


def _images(shapes, seed=0, channels=3):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (channels, h, w), dtype=torch.uint8, generator=generator)
            for h, w in shapes]


def _reference(image, size):
    return F.center_crop(F.resize(image.float(), size, antialias=True), size)


@pytest.mark.parametrize("size", [32, 112, 224])
def test_every_image_matches_torchvision_resize_and_centre_crop(size):
    images = _images(SHAPES)
    out = resize_crop(images, size)
    assert out.shape == (len(images), 3, size, size) and out.dtype == torch.float32
    for image, got in zip(images, out, strict=True):
        torch.testing.assert_close(got, _reference(image, size), rtol=0, atol=1e-3)


def test_sizes_and_crops_follow_torchvision():
    for height, width in SHAPES:
        image = torch.zeros(1, height, width)
        assert resized_size(height, width, 224) == tuple(F.resize(image, 224).shape[-2:])
    # torchvision's anchor rounds half to even: (17 - 10) / 2 = 3.5 -> 4, 2.5 -> 2
    assert crop_anchor(17, 10) == 4 and crop_anchor(15, 10) == 2


def test_split_buckets_give_the_same_pixels_in_the_same_order(monkeypatch):
    images = _images(SHAPES * 3, seed=1)
    whole = resize_crop(images, 48)
    # room for one 500 x 500 image per matmul: every bucket is split
    monkeypatch.setattr(batch_resize, "MAX_BUCKET_BYTES", 3 * 512 * 512 * 4)
    split = batch_resize._buckets([image.shape[-2:] for image in images], 3)
    assert max(len(b) for b in split) < len(SHAPES)
    assert sorted(i for b in split for i in b) == list(range(len(images)))
    torch.testing.assert_close(resize_crop(images, 48), whole, rtol=0, atol=1e-4)


def test_images_at_the_output_size_pass_through_unchanged():
    images = _images([(40, 40)] * 4 + [(80, 60)])
    out = resize_crop(images, 40)
    for image, got in zip(images[:4], out[:4], strict=True):
        assert torch.equal(got, image.float())


def test_autocast_does_not_lower_the_precision():
    images = _images(SHAPES[:6], seed=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = resize_crop(images, 64)
    assert out.dtype == torch.float32
    for image, got in zip(images, out, strict=True):
        torch.testing.assert_close(got, _reference(image, 64), rtol=0, atol=1e-3)


def test_grey_and_float_inputs():
    grey = _images([(50, 70), (90, 30)], channels=1)
    out = resize_crop(grey, 24)
    assert out.shape == (2, 1, 24, 24)
    torch.testing.assert_close(out[1], _reference(grey[1], 24), rtol=0, atol=1e-3)
    floats = [image.float() / 255 for image in _images([(50, 70)])]
    torch.testing.assert_close(resize_crop(floats, 24)[0], _reference(floats[0], 24),
                               rtol=0, atol=1e-5)


def test_an_empty_batch_is_refused():
    with pytest.raises(ValueError, match="no images"):
        resize_crop([], 32)
