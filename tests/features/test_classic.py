"""``--features classic``: what each block of the descriptor sees (knn reading it end to
end: tests/scoring/test_embedding_scorers.py)."""

from __future__ import annotations

import math
import re

import pytest
import torch

from condpretrain.data.images import IMAGENET_MEAN, IMAGENET_STD
from condpretrain.errors import CondPretrainError
from condpretrain.features import FEATURES
from condpretrain.features.classic import (
    BLOCK_SIZES,
    COLOUR_BINS,
    HYS_CLIP,
    LAYOUT_SIZE,
    ORIENTATIONS,
    ClassicDescriptor,
    l2_hys_blocks,
)
from condpretrain.features.embeddings import parse_features

LAYOUT = slice(0, LAYOUT_SIZE ** 2)
COLOUR = slice(LAYOUT.stop, LAYOUT.stop + COLOUR_BINS ** 3)
GRADIENTS = slice(COLOUR.stop, COLOUR.stop + BLOCK_SIZES["gradients"])
DIM = GRADIENTS.stop


def normalised(rgb01: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] as every source receives them: ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (rgb01 - mean) / std


def stripes(vertical: bool, size: int = 32, colour=(1.0, 1.0, 1.0)) -> torch.Tensor:
    line = (torch.arange(size) // 4 % 2).float()
    grid = line.view(1, size).expand(size, size) if vertical else line.view(size, 1).expand(size, size)
    return grid.unsqueeze(0) * torch.tensor(colour).view(3, 1, 1)


@pytest.fixture(scope="module")
def describe():
    model = ClassicDescriptor().eval()
    return lambda batch: model(normalised(batch))


def test_registered_and_sized():
    assert "classic" in FEATURES
    assert ClassicDescriptor().dim == DIM == 64 + 64 + 9 * 4 * ORIENTATIONS
    assert FEATURES.names()[-1] == "timm"  # the built-in networks' order is kept


def test_rows_are_unit_length_with_each_block_an_equal_third(describe):
    images = torch.rand(4, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    rows = describe(images)
    assert rows.shape == (4, DIM) and torch.isfinite(rows).all()
    torch.testing.assert_close(rows.norm(dim=1), torch.ones(4))
    for block in (LAYOUT, COLOUR, GRADIENTS):
        torch.testing.assert_close(rows[:, block].norm(dim=1), torch.full((4,), 3 ** -0.5))


def test_a_plain_colour_fills_one_colour_bin_and_has_no_gradients(describe):
    red = torch.zeros(1, 3, 32, 32)
    red[:, 0] = 1.0
    row = describe(red)[0]
    colour = row[COLOUR]
    assert int((colour > 0).sum()) == 1
    assert int(colour.argmax()) == (COLOUR_BINS - 1) * COLOUR_BINS ** 2  # R high, G and B low
    assert float(row[GRADIENTS].abs().max()) == 0.0
    assert float(row[LAYOUT].abs().max()) == 0.0  # nothing but its mean: no layout


def test_gradients_see_orientation_whatever_the_colour(describe):
    vertical_red = stripes(True, colour=(1.0, 0.0, 0.0))
    vertical_blue = stripes(True, colour=(0.0, 0.0, 1.0))
    horizontal_red = stripes(False, colour=(1.0, 0.0, 0.0))
    rows = describe(torch.stack([vertical_red, vertical_blue, horizontal_red]))
    grads = torch.nn.functional.normalize(rows[:, GRADIENTS], dim=1)
    colours = torch.nn.functional.normalize(rows[:, COLOUR], dim=1)
    assert float(grads[0] @ grads[1]) > 0.99  # same strokes, other colour
    assert float(grads[0] @ grads[2]) < 0.2  # other orientation
    assert float(colours[0] @ colours[1]) < 0.8  # while the colour block tells them apart


def test_gradient_blocks_are_normalised_locally(describe):
    """HOG's block normalisation: a faint stroke in one corner and a bold one elsewhere count
    alike, where one global norm lets the bold stroke drown the faint one."""
    image = torch.full((1, 3, 32, 32), 0.5)
    image[..., 2:6, 4] = 0.45  # faint vertical stroke, top left
    image[..., 26:30, 28] = 1.0  # bold vertical stroke, bottom right
    hog = describe(image)[0, GRADIENTS].view(-1, 4 * ORIENTATIONS)  # one row per 2x2 block
    top_left, bottom_right = hog[0].norm(), hog[-1].norm()
    torch.testing.assert_close(top_left, bottom_right)
    assert float(top_left) > 0


def test_l2_hys_clips_a_dominant_bin():
    cells = torch.zeros(1, ORIENTATIONS, 4, 4)
    cells[:, 0] = 1.0  # every cell: one strong orientation
    cells[:, 1] = 0.05  # and a weak one
    blocks = l2_hys_blocks(cells).view(9, -1)
    norm = math.sqrt(4 * (1.0 + 0.05 ** 2))  # a block: 4 cells
    # Normalised, the strong bins are 0.4994, clipped to HYS_CLIP; the weak stay 0.05 / norm.
    expected_ratio = HYS_CLIP / (0.05 / norm)
    # A block's values run orientation-major: 4 cells of orientation 0, then orientation 1.
    assert float(blocks[0, 0] / blocks[0, 4]) == pytest.approx(expected_ratio, rel=1e-5)
    torch.testing.assert_close(blocks.norm(dim=1), torch.full((9,), 1 / 3))


def test_the_same_image_at_another_resolution_reads_the_same(describe):
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    small = torch.nn.functional.interpolate(image, size=32, mode="nearest")
    large = torch.nn.functional.interpolate(image, size=96, mode="nearest")
    # Described one at a time: a batch holds one size.
    assert float(describe(small)[0] @ describe(large)[0]) > 0.95


def test_autocast_does_not_move_the_bins(describe):
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    plain = describe(images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = describe(images)
    assert under.dtype == torch.float32
    torch.testing.assert_close(under, plain)



def test_chosen_blocks_are_the_full_descriptors_parts_reweighted():
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    full = ClassicDescriptor()(normalised(images))
    grey = ClassicDescriptor(("layout", "gradients"))(normalised(images))
    kept = torch.cat([full[:, LAYOUT], full[:, GRADIENTS]], dim=1)
    assert grey.shape == (4, BLOCK_SIZES["layout"] + BLOCK_SIZES["gradients"])
    torch.testing.assert_close(grey, kept * math.sqrt(3) / math.sqrt(2))


@pytest.mark.parametrize("argument", ["colours", "layout+layout", "layout,gradients"])
def test_unknown_or_repeated_blocks_are_a_one_line_error(argument):
    with pytest.raises(CondPretrainError, match=re.escape(f"classic:{argument}: expected some of")):
        parse_features(f"classic:{argument}")
