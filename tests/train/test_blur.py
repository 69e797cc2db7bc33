"""MoCo's blur as two 1-D passes: torchvision's 2-D Gaussian blur, up to one grey level
on a rare pixel, with the sigma drawn as torchvision draws it."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from condpretrain.train.blur import SeparableGaussianBlur, blur


def _image(seed: int, size: tuple[int, int] = (48, 40)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, *size), dtype=torch.uint8, generator=generator)


@pytest.mark.parametrize("kernel", [3, 11, 23])
@pytest.mark.parametrize("sigma", [0.1, 0.7, 2.0])
def test_blur_is_torchvisions_to_a_grey_level(kernel, sigma):
    image = _image(kernel)
    got = blur(image, kernel, sigma)
    want = F.gaussian_blur(image, [kernel, kernel], [sigma, sigma])
    assert got.dtype == torch.uint8 and got.shape == image.shape
    difference = (got.int() - want.int()).abs()
    assert difference.max() <= 1 and (difference > 0).float().mean() < 1e-3


def test_float_images_stay_float_and_match():
    image = _image(1).float() / 255
    torch.testing.assert_close(blur(image, 7, 1.3), F.gaussian_blur(image, [7, 7], [1.3, 1.3]),
                               rtol=0, atol=1e-5)


def test_the_sigma_is_drawn_as_torchvision_draws_it():
    image = _image(2, (64, 64))
    ours = v2.RandomApply([SeparableGaussianBlur(23, (0.1, 2.0))], p=0.5)
    theirs = v2.RandomApply([v2.GaussianBlur(23, sigma=(0.1, 2.0))], p=0.5)
    torch.manual_seed(5)
    got = [ours(image) for _ in range(8)]
    torch.manual_seed(5)
    want = [theirs(image) for _ in range(8)]
    for g, w in zip(got, want, strict=True):  # blurred or not alike, the same sigma
        assert (g.int() - w.int()).abs().max() <= 1
    assert sum(not torch.equal(g, image) for g in got) not in (0, 8)  # p = 0.5 did both


def test_an_even_kernel_is_refused():
    with pytest.raises(ValueError, match="odd"):
        SeparableGaussianBlur(4, (0.1, 2.0))
