"""MoCo-v2's colour steps on the device, batched: each sample gets torchvision's own float
operations with its own parameters, in its own order; the worker draws them with
MoCo-v2's probabilities and ranges."""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as F

from condpretrain.train import photometric
from condpretrain.train.photometric import (
    BLUR,
    BRIGHTNESS,
    CONTRAST,
    GREY,
    HUE,
    JITTER,
    ORDER,
    SATURATION,
    SIGMA,
    CropAndDraw,
    apply,
    draw_params,
)

KERNEL = 7


def _torchvision(image: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """One sample through torchvision's float functions, the parameters' way."""
    steps = (lambda x: F.adjust_brightness(x, float(params[BRIGHTNESS])),
             lambda x: F.adjust_contrast(x, float(params[CONTRAST])),
             lambda x: F.adjust_saturation(x, float(params[SATURATION])),
             lambda x: F.adjust_hue(x, float(params[HUE])))
    if params[JITTER]:
        for kind in params[ORDER].long().tolist():
            image = steps[kind](image)
    if params[GREY]:
        image = F.rgb_to_grayscale(image, num_output_channels=3)
    if params[BLUR]:
        sigma = float(params[SIGMA])
        image = F.gaussian_blur(image, [KERNEL, KERNEL], [sigma, sigma])
    return image


def _batch(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    images = torch.rand(count, 3, 24, 20)
    params = torch.stack([draw_params((0.1, 2.0)) for _ in range(count)])
    return images, params


def test_every_sample_gets_torchvisions_steps_with_its_own_parameters():
    images, params = _batch(64, seed=0)
    out = apply(images, params, KERNEL)
    assert out.shape == images.shape and out.dtype == torch.float32
    for image, row, got in zip(images, params, out, strict=True):
        torch.testing.assert_close(got, _torchvision(image, row), rtol=0, atol=2e-5)


def test_the_hue_shift_is_torchvisions_for_every_sextant():
    # saturated, grey and mixed colours around the wheel, shifted both ways
    torch.manual_seed(1)
    images = torch.rand(9, 3, 16, 16)
    images[0] = 0.5  # grey: no hue
    images[1, 0], images[1, 1:] = 1.0, 0.0  # pure red
    for shift in (-0.5, -0.1, 0.0, 0.07, 0.5):
        got = photometric._hue(images, torch.full((9, 1, 1, 1), shift))
        for image, one in zip(images, got, strict=True):
            torch.testing.assert_close(one, F.adjust_hue(image, shift), rtol=0, atol=2e-5)


def test_draws_follow_moco_v2s_probabilities_and_ranges():
    torch.manual_seed(2)
    params = torch.stack([draw_params((0.1, 2.0)) for _ in range(4000)])
    for column, p in ((JITTER, 0.8), (GREY, 0.2), (BLUR, 0.5)):
        assert abs(float(params[:, column].mean()) - p) < 0.03
    for column, low, high in ((BRIGHTNESS, 0.6, 1.4), (CONTRAST, 0.6, 1.4),
                              (SATURATION, 0.6, 1.4), (HUE, -0.1, 0.1), (SIGMA, 0.1, 2.0)):
        values = params[:, column]
        assert low <= float(values.min()) < low + 0.01 and high - 0.01 < float(values.max()) <= high
    assert all(sorted(row) == [0, 1, 2, 3] for row in params[:, ORDER].long().tolist())
    assert len({tuple(row) for row in params[:, ORDER].long().tolist()}) == 24


def test_the_worker_crops_flips_and_draws_reproducibly():
    augment = CropAndDraw(32)
    image = torch.randint(0, 256, (3, 37, 49), dtype=torch.uint8)
    torch.manual_seed(3)
    view, params = augment(image)
    torch.manual_seed(3)
    again, same = augment(image)
    assert view.shape == (3, 32, 32) and view.dtype == torch.uint8 and params.shape == (12,)
    assert torch.equal(view, again) and torch.equal(params, same)
    assert augment.sigma == (0.1 * 32 / 224, 2.0 * 32 / 224)


def test_bf16_autocast_leaves_the_colour_maths_in_float32():
    images, params = _batch(8, seed=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = apply(images, params, KERNEL)
    torch.testing.assert_close(out, apply(images, params, KERNEL), rtol=0, atol=0)


def test_a_moco_run_applies_the_colour_steps_on_the_device(pool4, tmp_path, monkeypatch):
    from conftest import tiny_pretrain

    from condpretrain.train.pretrain import pretrain

    shapes = []
    real = photometric.apply

    def spy(images, params, kernel_size):
        shapes.append((tuple(images.shape), tuple(params.shape), kernel_size))
        return real(images, params, kernel_size)

    monkeypatch.setattr(photometric, "apply", spy)
    losses = {}
    for where in ("workers", "device"):
        config = tiny_pretrain(mode="moco", epochs=1, batch_size=24, moco_augment_on=where)
        losses[where] = pretrain(str(pool4), tmp_path / where, config).result["final_loss"]
        if where == "workers":
            assert not shapes  # the workers' transforms did it all
    # two views of each of 24 images per step, 12 parameters each, the 16 px kernel (3 taps)
    assert shapes and all(s == ((48, 3, 16, 16), (48, 12), 3) for s in shapes)
    assert losses["workers"] != losses["device"]  # the same seed, other pixels
