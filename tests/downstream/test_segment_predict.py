"""Segmentation's test-time prediction as semseg's single-scale test: resize to the base
size, slide crops over the image padded centred, scores resized back."""

from __future__ import annotations

import torch
from torch import nn

from condpretrain.downstream.segmentation import (
    predict_logits,
    resize_longer_side,
    slide_crops,
)


class Brightness(nn.Module):
    """Two classes: 'bright' scores the first channel, 'dark' a constant; records the
    windows it is shown."""

    def __init__(self) -> None:
        super().__init__()
        self.windows: list[tuple[int, int]] = []
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.windows += [tuple(x.shape[-2:])] * len(x)
        self.seen.append(x[0, 0].clone())
        return torch.cat([4 * x[:, :1], torch.zeros_like(x[:, :1])], 1)


def conv_bn_net(seed: int) -> nn.Module:
    """A small segmenter in eval mode whose output depends on each pixel's neighbours."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 3, 3, padding=1)).eval()


def test_resize_longer_side_as_semseg():
    assert resize_longer_side(torch.rand(3, 40, 30), 20).shape[-2:] == (20, 15)
    assert resize_longer_side(torch.rand(3, 30, 45), 20).shape[-2:] == (13, 20)
    image = torch.rand(3, 20, 15)
    assert resize_longer_side(image, 20) is image  # already that size: untouched


def test_the_model_sees_the_image_at_the_base_size_and_scores_come_back_full_size():
    model = Brightness()
    scores = predict_logits(model, torch.ones(3, 40, 30), crop=9, device=torch.device("cpu"),
                            amp=False, flip=False, base_size=20)
    assert scores.shape == (2, 40, 30)
    # 20 x 15 at the base size: crops of 9 every 6 px, 3 rows x 2 columns (the last clamped)
    assert model.windows == [(9, 9)] * 6
    assert (scores.argmax(0) == 0).all()  # bright everywhere
    model.windows.clear()
    predict_logits(model, torch.ones(3, 40, 30), 9, torch.device("cpu"), False, False, 0)
    assert len(model.windows) == 7 * 5  # the whole 40 x 30 without a base size


def test_padding_is_centred_and_cut_away_again():
    # A 5 x 4 bright image in a 9 px crop: every image pixel must come out 'bright'; had
    # the padding (mean colour, 0.0: 'dark' and 'bright' tie) not been cut where it was
    # added, some image pixels would read the padding's scores.
    image = torch.ones(3, 5, 4)
    image[0, 0, 0] = image[0, -1, -1] = 2.0  # the corners the padding borders
    model = Brightness()
    scores = slide_crops(model, image, 9, torch.device("cpu"), amp=False, flip=True)
    window = model.seen[0]  # semseg's pad_h // 2 above, the rest below; the same across
    assert window[2:7, 2:6].equal(image[0]) and window.sum() == image[0].sum()
    assert scores.shape == (2, 5, 4)
    assert (scores[0] > 0.9).all()
    torch.testing.assert_close(scores.sum(0), torch.ones(5, 4))  # flip averaged, not summed


def test_the_mirrored_crop_rides_in_the_same_forward_and_is_mirrored_back():
    model = conv_bn_net(seed=0)
    image, cpu = torch.rand(3, 12, 15), torch.device("cpu")
    both = slide_crops(model, image, 9, cpu, amp=False, flip=True)
    plain = slide_crops(model, image, 9, cpu, amp=False, flip=False)
    mirrored = slide_crops(model, image.flip(-1), 9, cpu, amp=False, flip=False).flip(-1)
    torch.testing.assert_close(both, (plain + mirrored) / 2, atol=1e-6, rtol=0)


def test_crops_batched_together_score_as_one_at_a_time():
    model = conv_bn_net(seed=1)
    image, cpu = torch.rand(3, 20, 26), torch.device("cpu")  # 3 x 4 crops of 9
    one = slide_crops(model, image, 9, cpu, amp=False, flip=True, windows_per_forward=1)
    for per_forward in (3, 12):
        batched = slide_crops(model, image, 9, cpu, False, True, per_forward)
        torch.testing.assert_close(batched, one, atol=1e-6, rtol=0)
