"""Downstream evaluation of a backbone: VOC detection (Faster R-CNN C4) and
segmentation (PSANet). Importing this package registers both in ``DOWNSTREAM_TASKS``."""

from condpretrain.downstream.detection import Detection, detect
from condpretrain.downstream.segmentation import Segmentation, segment
from condpretrain.downstream.task import DOWNSTREAM_TASKS, DownstreamTask, run_task

__all__ = ["detect", "segment", "Detection", "Segmentation", "DOWNSTREAM_TASKS",
           "DownstreamTask", "run_task"]
