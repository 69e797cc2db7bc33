"""Detection and segmentation are registered downstream tasks on the one loop."""

from __future__ import annotations

import pytest

from condpretrain.config import DetectConfig, SegmentConfig, build_config
from condpretrain.downstream import DOWNSTREAM_TASKS, Detection, Segmentation
from condpretrain.downstream.detection import warmup_multistep
from condpretrain.downstream.segmentation import poly


def test_both_tasks_are_registered_with_their_metrics():
    assert DOWNSTREAM_TASKS.names() == ["detect", "segment"]
    assert DOWNSTREAM_TASKS["detect"] is Detection and DOWNSTREAM_TASKS["segment"] is Segmentation
    assert Detection.metrics == ("AP50", "AP", "AP75")
    assert Segmentation.metrics == ("mIoU", "mAcc", "allAcc")
    assert DOWNSTREAM_TASKS.label("detect") and DOWNSTREAM_TASKS.label("segment")


def test_schedules_are_iteration_based():
    det = Detection("voc", build_config(DetectConfig, "quick")).schedule(train_images=5)
    assert (det.iterations, det.log_every, det.iterations_per_epoch) == (4, 2, 2.5)
    seg = Segmentation("voc", build_config(SegmentConfig, "quick", batch_size=3)).schedule(7)
    assert (seg.iterations, seg.log_every) == (4, 2)  # 2 epochs x 7 // 3 full batches


def test_lr_factors():
    factor = warmup_multistep([3], 0.1, warmup=2, warmup_factor=0.001)
    assert [factor(i) for i in range(5)] == pytest.approx([0.001, 0.5005, 1.0, 0.1, 0.1])
    assert [poly(4, 1.0)(i) for i in range(5)] == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
