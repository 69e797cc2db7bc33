"""``classic``: colour, layout and gradient statistics of an image; no weights, no training.

The three descriptors that image retrieval used before learned features, side by side:

* **layout**: the grey image pooled to 8 x 8, its mean removed (Torralba's "tiny images");
  where the light and dark parts are, whatever the exact pixels;
* **colour**: a joint RGB histogram of 4 x 4 x 4 bins (Swain and Ballard's colour indexing);
  which colours, wherever they are;
* **gradients**: 8 unsigned orientation bins of the grey image's gradient, weighted by its
  magnitude, in a 4 x 4 grid of cells, each overlapping block of 2 x 2 cells normalised
  on its own with L2-Hys (a coarse HOG, Dalal and Triggs): the strokes and edges, whatever
  their colour and their local contrast.

``classic:BLOCKS`` keeps some of them, joined by ``+`` (``classic:layout+gradients``:
no colour, for a target whose colours are not the pool's, such as drawings or grey
scans of photographed things).

The colour histogram is square-rooted (the Hellinger kernel, which keeps a few large bins
from drowning the rest); the gradient blocks are clipped at 0.2 after normalising and
normalised again (L2-Hys, HOG's own answer to the same problem: one strong edge cannot
drown the weaker ones, and a faint outline counts like a bold one). Each of the three is
L2-normalised and they are joined with equal weight, so the descriptor (416 numbers with
all three) has unit length and cosine similarity compares all three. The embedding
scorers may weight the blocks per target (``--block-weights``, :mod:`condpretrain.features.blocks`).

Why a selection tool needs it: the paper's features come from a model trained on the
small target alone, which knows nothing of the pool, and the practitioners' answer
(DINOv2, CLIP, a MoCo backbone) needs weights that not every machine has. These
statistics need nothing, cost a few convolutions per batch on the selection's device
(CPU or GPU) and do not depend on the target, so the pool is embedded once for every
target. They see style and layout, not semantics: on photographs of objects a learned
embedding (``timm:NAME@WEIGHTS``, ``npy:PATH``) is the stronger choice.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from condpretrain.data.images import IMAGENET_MEAN, IMAGENET_STD
from condpretrain.data.sources import Target
from condpretrain.device import prepare_model
from condpretrain.errors import CondPretrainError
from condpretrain.features.base import FEATURES, FeatureContext, FeatureSource

LAYOUT_SIZE = 8
COLOUR_BINS = 4
CELLS = 4
ORIENTATIONS = 8
# HOG's block normalisation (Dalal and Triggs' R-HOG with L2-Hys): blocks of 2 x 2 cells at
# a stride of one cell, each clipped at 0.2 of its norm.
BLOCK_CELLS = 2
HYS_CLIP = 0.2
BLOCKS = ("layout", "colour", "gradients")
# Rec. 601 luma: the grey image the layout and gradient blocks read.
LUMA = (0.299, 0.587, 0.114)


class ClassicDescriptor(nn.Module):
    """Batch of ImageNet-normalised images (N, 3, H, W) -> (N, dim) unit-length descriptors
    of the chosen ``blocks`` (all three: 256 numbers)."""

    def __init__(self, blocks: tuple[str, ...] = BLOCKS) -> None:
        super().__init__()
        self.blocks = parse_blocks("+".join(blocks))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1))
        # Central differences: the gradient HOG uses (no smoothing, per Dalal and Triggs).
        self.register_buffer("dx", torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 1, 3))
        self.register_buffer("dy", torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 3, 1))

    @property
    def dim(self) -> int:
        return sum(BLOCK_SIZES[block] for block in self.blocks)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Histogram bins move with rounding: always fp32, whatever autocast is on outside.
        with torch.autocast(images.device.type, enabled=False):
            rgb = (images.float() * self.std + self.mean).clamp(0.0, 1.0)
            grey = (rgb * self.luma).sum(dim=1, keepdim=True)
            makers = {"layout": lambda: layout(grey), "colour": lambda: colour_histogram(rgb),
                      "gradients": lambda: self.gradients(grey)}
            blocks = [makers[block]() for block in self.blocks]
            return torch.cat(blocks, dim=1) / math.sqrt(len(blocks))

    def gradients(self, grey: torch.Tensor) -> torch.Tensor:
        padded = F.pad(grey, (1, 1, 1, 1), mode="replicate")
        gx = F.conv2d(padded[:, :, 1:-1, :], self.dx)
        gy = F.conv2d(padded[:, :, :, 1:-1], self.dy)
        magnitude = torch.sqrt(gx ** 2 + gy ** 2)
        angle = torch.remainder(torch.atan2(gy, gx), math.pi)  # unsigned: a stroke either way
        bins = (angle * (ORIENTATIONS / math.pi)).long().clamp_(max=ORIENTATIONS - 1)
        votes = F.one_hot(bins[:, 0], ORIENTATIONS).permute(0, 3, 1, 2) * magnitude
        return l2_hys_blocks(F.adaptive_avg_pool2d(votes, CELLS))


def l2_hys_blocks(cells: torch.Tensor) -> torch.Tensor:
    """(N, orientations, CELLS, CELLS) cell histograms -> (N, 288) unit-length HOG: every
    2 x 2 block of cells normalised, clipped at HYS_CLIP and normalised again."""
    blocks = F.unfold(cells, kernel_size=BLOCK_CELLS, stride=1).transpose(1, 2)
    blocks = F.normalize(F.normalize(blocks, dim=2).clamp(max=HYS_CLIP), dim=2)
    return F.normalize(blocks.flatten(1), dim=1)


def layout(grey: torch.Tensor) -> torch.Tensor:
    tiny = F.adaptive_avg_pool2d(grey, LAYOUT_SIZE).flatten(1)
    return F.normalize(tiny - tiny.mean(dim=1, keepdim=True), dim=1)


def colour_histogram(rgb: torch.Tensor) -> torch.Tensor:
    levels = (rgb * COLOUR_BINS).long().clamp_(max=COLOUR_BINS - 1)
    cell = (levels[:, 0] * COLOUR_BINS + levels[:, 1]) * COLOUR_BINS + levels[:, 2]
    counts = torch.zeros(len(rgb), COLOUR_BINS ** 3, device=rgb.device)
    flat = cell.flatten(1)
    counts.scatter_add_(1, flat, torch.ones_like(flat, dtype=counts.dtype))
    return _hellinger(counts)


def _hellinger(histogram: torch.Tensor) -> torch.Tensor:
    return F.normalize(histogram.clamp_min(0.0).sqrt(), dim=1)


BLOCK_SIZES = {"layout": LAYOUT_SIZE ** 2, "colour": COLOUR_BINS ** 3,
               "gradients": (CELLS - BLOCK_CELLS + 1) ** 2 * BLOCK_CELLS ** 2 * ORIENTATIONS}


def parse_blocks(argument: str) -> tuple[str, ...]:
    """``classic:BLOCKS``'s argument ('' : all three) as block names in the fixed order."""
    if not argument:
        return BLOCKS
    chosen = argument.split("+")
    unknown = [block for block in chosen if block not in BLOCKS]
    if unknown or len(set(chosen)) != len(chosen):
        raise CondPretrainError(f"--features classic:{argument}: expected some of "
                                f"{', '.join(BLOCKS)} joined by '+', each once "
                                f"(e.g. classic:layout+gradients)")
    return tuple(block for block in BLOCKS if block in chosen)


def settings(blocks: tuple[str, ...] = BLOCKS) -> dict[str, Any]:
    """What the descriptor is: recorded, and part of the cached embeddings' key."""
    return {"from": "classic", "blocks": list(blocks), "layout": LAYOUT_SIZE,
            "colour_bins": COLOUR_BINS, "cells": CELLS, "orientations": ORIENTATIONS,
            "hog_blocks": f"{BLOCK_CELLS}x{BLOCK_CELLS} L2-Hys {HYS_CLIP}"}


@FEATURES.register
class ClassicFeatures(FeatureSource):
    name = "classic"
    summary = ("colour histogram + 8x8 layout + gradient orientations (HOG-like): no weights, "
               "no training, the same for every target; classic:layout+gradients leaves "
               "colour out")
    order = 2  # with moco and npy (listed by name): after the two networks, before timm

    @classmethod
    def block_layout(cls, argument: str) -> dict[str, int] | None:
        return {block: BLOCK_SIZES[block] for block in parse_blocks(argument)}

    def extractor(self, target: Target | None, context: FeatureContext) -> nn.Module:
        # No ResNet head to replace: the descriptor is the feature vector.
        return prepare_model(self.network(target, context), context.device).eval()

    def network(self, target: Target | None, context: FeatureContext) -> nn.Module:
        blocks = parse_blocks(context.config.features.partition(":")[2])
        context.models_used["features"] = settings(blocks)
        return ClassicDescriptor(blocks)


__all__ = ["BLOCKS", "BLOCK_SIZES", "ClassicDescriptor", "ClassicFeatures", "colour_histogram",
           "l2_hys_blocks", "layout", "parse_blocks", "settings"]
