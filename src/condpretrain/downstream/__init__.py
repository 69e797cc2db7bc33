"""Downstream evaluation of a backbone: VOC detection (Faster R-CNN C4) and
segmentation (PSANet)."""

from condpretrain.downstream.detection import detect
from condpretrain.downstream.segmentation import segment

__all__ = ["detect", "segment"]
