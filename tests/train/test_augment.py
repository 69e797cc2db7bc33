"""Training crops come from the whole image (cached or not); evaluation keeps the centre
crop; MoCo-v2's blur follows the resolution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from condpretrain.data.cache import stored_size
from condpretrain.dist import DistContext
from condpretrain.train import common
from condpretrain.train.blur import SeparableGaussianBlur
from condpretrain.train.data import (
    AugmentedDataset,
    eval_crop,
    moco_v2_augment,
    supervised_augment,
)
from condpretrain.train.run import RunDir

RED, GREY, BLUE = (255, 0, 0), (128, 128, 128), (0, 0, 255)


@pytest.fixture()
def thirds(tmp_path) -> str:
    """300 x 100: left third red, middle grey, right third blue."""
    pixels = np.zeros((100, 300, 3), np.uint8)
    for i, colour in enumerate((RED, GREY, BLUE)):
        pixels[:, 100 * i:100 * (i + 1)] = colour
    Image.fromarray(pixels).save(tmp_path / "thirds.png")
    return str(tmp_path / "thirds.png")


def _source(path: str, resolution: int, cache: bool, tmp_path):
    return common.image_source([path], resolution, cache=cache, cache_dir=None,
                               run=RunDir(tmp_path / f"run-{cache}"), workers=0,
                               max_pixels=10**8, ctx=DistContext())


def _share(crop: torch.Tensor, colour: str) -> float:
    """Share of the crop's pixels that are clearly red (or blue): colour jitter moves hue
    and saturation, not which of red and blue dominates."""
    red, blue = crop[0].float(), crop[2].float()
    return float(((red - blue > 80) if colour == "red" else (blue - red > 80)).float().mean())


@pytest.mark.parametrize("cache", [True, False], ids=["cached", "uncached"])
@pytest.mark.parametrize("method", ["supervised", "moco"])
def test_training_crops_reach_both_ends_of_the_image(thirds, tmp_path, cache, method):
    resolution = 32
    augment = supervised_augment(resolution) if method == "supervised" else \
        moco_v2_augment(resolution)
    dataset = AugmentedDataset(_source(thirds, resolution, cache, tmp_path), augment, seed=3)
    reds, blues = [], []
    for epoch in range(200):
        dataset.epoch = epoch
        crop = dataset[0][0]
        assert tuple(crop.shape) == (3, resolution, resolution)
        reds.append(_share(crop, "red"))
        blues.append(_share(crop, "blue"))
    # Today's centre square (the grey third) never shows either end.
    assert max(reds) > 0.5 and max(blues) > 0.5
    assert sum(r > 0.5 for r in reds) >= 5 and sum(b > 0.5 for b in blues) >= 5


def test_evaluation_sees_the_centre_crop_of_the_short_side_resize(thirds, tmp_path):
    resolution = 64
    size = stored_size(resolution)
    reference = v2.functional.center_crop(v2.functional.resize(
        v2.functional.pil_to_tensor(Image.open(thirds)), [size], antialias=True), [resolution])
    for cache in (True, False):
        dataset = AugmentedDataset(_source(thirds, resolution, cache, tmp_path),
                                   eval_crop(resolution), seed=0)
        crop = dataset[0][0]
        assert tuple(crop.shape) == (3, resolution, resolution)
        error = (crop.float() - reference.float()).abs()
        assert error.mean() < 1 and error.max() <= 8  # the record is a JPEG (q90)
        assert (crop.float() - 128).abs().max() <= 8  # the grey middle only


def _blur(augment: v2.Transform) -> SeparableGaussianBlur | None:
    if isinstance(augment, SeparableGaussianBlur):
        return augment
    inner = getattr(augment, "transforms", [])
    return next((b for b in (_blur(t) for t in inner) if b is not None), None)


def test_moco_blur_scales_with_the_resolution():
    full, half = _blur(moco_v2_augment(224)), _blur(moco_v2_augment(112))
    assert list(full.sigma) == pytest.approx([0.1, 2.0])  # MoCo-v2's, at 224 px
    assert list(half.sigma) == pytest.approx([0.05, 1.0])
    assert full.kernel_size == 23 and half.kernel_size == 11


def test_supervised_crop_scale_and_flip_options():
    from condpretrain.train.data import supervised_augment

    # a left-dark, right-bright image: a mirror swaps the halves, a full crop keeps them
    image = torch.zeros(3, 32, 32, dtype=torch.uint8)
    image[:, :, 16:] = 255
    torch.manual_seed(0)
    no_flip = [supervised_augment(32, scale=1.0, flip=False)(image) for _ in range(20)]
    assert all(v[:, :, :8].float().mean() < v[:, :, -8:].float().mean() for v in no_flip)
    flipped = [supervised_augment(32, scale=1.0, flip=True)(image) for _ in range(40)]
    assert any(v[:, :, :8].float().mean() > v[:, :, -8:].float().mean() for v in flipped)
    crops = supervised_augment(32, scale=0.9, flip=False).transforms[0]
    assert crops.scale == (0.9, 1.0)
