"""PSANet's training augmentation against semseg's (OpenCV) behaviour, on tiny tensors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from condpretrain.downstream.seg_augment import (
    SegmentationAugment,
    gaussian_blur_5,
    pad_to,
    random_blur,
    random_rotate,
    rotate,
)
from condpretrain.downstream.voc import SegmentationDataset, load_segmentation_split
from condpretrain.train.data import SeededDataset


def test_rotate_90_is_opencvs_counter_clockwise_turn_about_w_half():
    # cv2.getRotationMatrix2D((4, 4), 90, 1) on an 8 x 8 grid: out[y, x] = in[x, 8 - y],
    # i.e. numpy's rot90 one row lower (OpenCV's centre is half a pixel off the grid's),
    # with the top row brought in from outside.
    image = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    mask = torch.arange(64).view(8, 8) % 21
    out_image, out_mask = rotate(image, mask, 90.0)
    turned_image, turned_mask = torch.rot90(image, 1, (-2, -1)), torch.rot90(mask, 1, (-2, -1))
    torch.testing.assert_close(out_image[:, 1:], turned_image[:, :-1], atol=1e-5, rtol=0)
    assert torch.equal(out_mask[1:], turned_mask[:-1])
    assert (out_mask[0] == 255).all() and (out_image[:, 0] == 0.0).all()
    marked = torch.zeros(1, 8, 8)
    marked[0, 0, 7] = 1.0  # top-right corner ...
    moved = rotate(marked, torch.zeros(8, 8, dtype=torch.long), 90.0)[0][0]
    assert moved.argmax().item() == 1 * 8 + 0  # ... to the left edge, one row down


def test_rotation_keeps_labels_and_fills_corners():
    mask = torch.zeros(20, 20, dtype=torch.long)
    mask[3:12, 5:15], mask[12:, :8] = 3, 7
    image = torch.ones(3, 20, 20)
    out_image, out_mask = rotate(image, mask, 30.0)
    assert out_mask.dtype == torch.long and out_image.shape == (3, 20, 20)
    assert set(out_mask.unique().tolist()) == {0, 3, 7, 255}  # nearest: no new classes
    for y, x in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        assert out_mask[y, x] == 255 and (out_image[:, y, x] == 0.0).all()
    assert (out_image[:, 10, 10] == 1.0).all()  # well inside: untouched by the border


def _old_pipeline(image, mask, crop, scale_range):
    """The scale -> flip -> crop augmentation before rotation and blur existed."""
    scale = float(torch.empty(()).uniform_(*scale_range))
    h, w = mask.shape
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].long()
    if torch.rand(()) < 0.5:
        image, mask = image.flip(-1), mask.flip(-1)
    top = int(torch.randint(0, mask.shape[0] - crop + 1, ()))
    left = int(torch.randint(0, mask.shape[1] - crop + 1, ()))
    return image[:, top:top + crop, left:left + crop], mask[top:top + crop, left:left + crop]


def test_without_rotation_and_blur_it_is_the_old_pipeline():
    image = torch.rand(3, 40, 48, generator=torch.Generator().manual_seed(1))
    mask = torch.randint(0, 21, (40, 48), generator=torch.Generator().manual_seed(2))
    plain = SegmentationAugment(17, (0.75, 1.25), rotate=0.0, blur=False)
    full = SegmentationAugment(17, (0.75, 1.25))
    blur_only = SegmentationAugment(17, (0.75, 1.25), rotate=0.0)
    differs = blur_differs = 0
    for seed in range(8):
        torch.manual_seed(seed)
        got = plain(image, mask)
        torch.manual_seed(seed)
        want = _old_pipeline(image, mask, 17, (0.75, 1.25))
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        torch.manual_seed(seed)
        differs += not torch.equal(full(image, mask)[0], got[0])
        torch.manual_seed(seed)
        blur_differs += not torch.equal(blur_only(image, mask)[0], got[0])
    assert differs >= 4 and blur_differs >= 4  # the default does rotate and blur


def test_blur_is_opencvs_5x5_binomial_with_reflect_101():
    image = torch.randn(3, 9, 11, generator=torch.Generator().manual_seed(0))
    taps = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
    kernel = torch.outer(taps, taps).expand(3, 1, 5, 5)
    want = F.conv2d(F.pad(image[None], (2, 2, 2, 2), mode="reflect"), kernel, groups=3)[0]
    torch.testing.assert_close(gaussian_blur_5(image), want, atol=1e-6, rtol=0)
    flat = torch.full((3, 6, 7), 0.7)
    torch.testing.assert_close(gaussian_blur_5(flat), flat, atol=1e-6, rtol=0)
    tiny = torch.randn(3, 2, 9)  # too small to reflect 2 pixels: left alone
    assert torch.equal(gaussian_blur_5(tiny), tiny)


def test_rotation_and_blur_each_apply_to_about_half():
    image = torch.rand(3, 12, 12, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(12, 12, dtype=torch.long)
    rotated = blurred = 0
    for seed in range(400):
        torch.manual_seed(seed)
        rotated += not torch.equal(random_rotate(image, mask, 10.0)[0], image)
        torch.manual_seed(seed + 10_000)
        blurred += not torch.equal(random_blur(image), image)
    assert 160 <= rotated <= 240 and 160 <= blurred <= 240


@pytest.mark.parametrize("seed", range(4))
def test_padding_is_centred_as_semseg(seed: int):
    # 4 x 5 into 10 x 10: 6 rows of padding (3 above, 3 below), 5 columns (2 left, 3
    # right). The crop window is the whole canvas, so the pixels stay where padding put them.
    image = torch.rand(3, 4, 5) + 1.0
    mask = torch.ones(4, 5, dtype=torch.long)
    torch.manual_seed(seed)
    out_image, out_mask = SegmentationAugment(10, (1.0, 1.0), rotate=0.0, blur=False)(image, mask)
    kept = torch.zeros(10, 10, dtype=torch.bool)
    kept[3:7, 2:7] = True
    assert torch.equal(out_mask != 255, kept) and (out_mask[kept] == 1).all()
    assert (out_image[:, ~kept] == 0.0).all() and (out_image[:, kept] >= 1.0).all()
    padded, _ = pad_to(image, mask, 10)
    assert torch.equal(padded[:, 3:7, 2:7], image)


def test_seeded_dataset_repeats_its_sample(tiny_voc: Path):
    pairs = load_segmentation_split(tiny_voc, "train")
    dataset = SeededDataset(SegmentationDataset(pairs, train=True, crop_size=33), seed=3)
    first = dataset[0]
    torch.manual_seed(123)  # the caller's RNG state must not matter
    again = dataset[0]
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    other = SeededDataset(SegmentationDataset(pairs, train=True, crop_size=33), seed=4)[0]
    assert not torch.equal(first[0], other[0])
