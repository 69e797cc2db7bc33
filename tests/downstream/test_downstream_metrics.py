"""Metrics against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from condpretrain.downstream.metrics import (
    Detections,
    GroundTruth,
    box_iou,
    coco_detection_scores,
    coco_evaluator_name,
    confusion_matrix,
    segmentation_scores,
    voc07_ap,
    voc_class_ap,
    voc_detection_scores,
)


def test_confusion_matrix_ignores_255():
    target = torch.tensor([[0, 0, 1, 255]])
    pred = torch.tensor([[0, 1, 1, 0]])
    assert confusion_matrix(pred, target, 2).tolist() == [[1, 1], [0, 1]]


def test_segmentation_perfect_and_2x2_case():
    perfect = segmentation_scores(np.array([[5, 0], [0, 3]]))
    assert perfect["mIoU"] == perfect["mAcc"] == perfect["allAcc"] == 1.0
    # rows = truth, cols = prediction: class 0: TP 3, FN 1, FP 2; class 1: TP 4, FN 2, FP 1
    scores = segmentation_scores(np.array([[3, 1], [2, 4]]))
    assert scores["per_class_IoU"] == pytest.approx([3 / 6, 4 / 7])
    assert scores["mIoU"] == pytest.approx((3 / 6 + 4 / 7) / 2)
    assert scores["mAcc"] == pytest.approx((3 / 4 + 4 / 6) / 2)
    assert scores["allAcc"] == pytest.approx(7 / 10)


def test_segmentation_absent_class_is_left_out_of_means():
    scores = segmentation_scores(np.array([[2, 0, 0], [0, 0, 0], [0, 0, 2]]))
    assert scores["per_class_IoU"][1] is None and scores["mIoU"] == 1.0


def test_box_iou_known_overlap():
    assert box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10]]))[0, 0] == \
        pytest.approx(50 / 150)


def test_voc07_ap_eleven_points():
    # recall reaches 0.5 at precision 1, never more: 6 of 11 points (0, .1, ..., .5)
    assert voc07_ap(np.array([0.5]), np.array([1.0])) == pytest.approx(6 / 11)
    assert voc07_ap(np.array([0.5, 1.0]), np.array([1.0, 0.5])) == pytest.approx((6 + 5 * 0.5) / 11)


def _gt(boxes, labels, difficult=None):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    difficult = np.zeros(len(boxes), bool) if difficult is None else np.asarray(difficult)
    return GroundTruth(boxes, np.asarray(labels), difficult)


def _det(boxes, scores, labels):
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
                      np.asarray(labels))


def test_one_tp_one_fp_known_ap():
    truths = [_gt([[0, 0, 10, 10]], [1]), _gt([[0, 0, 10, 10]], [1])]
    # image 0: a hit (0.9); image 1: a miss with the higher score (0.95) and nothing else
    dets = [_det([[0, 0, 10, 10]], [0.9], [1]), _det([[20, 20, 30, 30]], [0.95], [1])]
    # ranked: FP (p=0, r=0), TP (p=0.5, r=0.5) -> points 0..0.5 at precision 0.5
    assert voc_class_ap(dets, truths, 1, 0.5) == pytest.approx(6 * 0.5 / 11)
    ap = voc_detection_scores(dets, truths, ["a"])
    assert ap["AP50"] == pytest.approx(100 * 3 / 11)


def test_perfect_detection_is_100_and_duplicates_are_false_positives():
    truths = [_gt([[0, 0, 10, 10], [20, 20, 40, 30]], [1, 2])]
    dets = [_det([[0, 0, 10, 10], [20, 20, 40, 30]], [0.9, 0.8], [1, 2])]
    scores = voc_detection_scores(dets, truths, ["a", "b"])
    assert scores["AP50"] == scores["AP75"] == scores["AP"] == 100.0
    dup = [_det([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8], [1, 1])]
    # TP then FP: precision 1 up to recall 1 -> AP 1 still (11-point max precision)
    assert voc_class_ap(dup, truths, 1, 0.5) == 1.0


def test_partial_overlap_counts_at_05_but_not_075():
    truths = [_gt([[0, 0, 10, 10]], [1])]
    dets = [_det([[0, 0, 10, 7.2]], [0.9], [1])]  # IoU 0.72
    scores = voc_detection_scores(dets, truths, ["a"])
    assert scores["AP50"] == 100.0 and scores["AP75"] == 0.0
    assert scores["AP"] == pytest.approx(100 * 5 / 10)  # hits at 0.50..0.70 of 0.50..0.95


def test_difficult_objects_are_ignored():
    truths = [_gt([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1], [False, True])]
    dets = [_det([[20, 20, 30, 30], [0, 0, 10, 10]], [0.9, 0.8], [1, 1])]
    assert voc_class_ap(dets, truths, 1, 0.5) == 1.0


@pytest.mark.skipif(coco_evaluator_name() is None, reason="no COCO evaluator installed "
                    "(pip install 'condpretrain[detection]')")
def test_coco_evaluator_agrees_on_perfect_and_partial():
    truths = [_gt([[0, 0, 10, 10], [20, 20, 40, 30]], [1, 2])]
    perfect = coco_detection_scores(
        [_det([[0, 0, 10, 10], [20, 20, 40, 30]], [0.9, 0.8], [1, 2])], truths, ["a", "b"])
    assert perfect["AP"] == pytest.approx(100) and perfect["AP50"] == pytest.approx(100)
    partial = coco_detection_scores([_det([[0, 0, 10, 7.2]], [0.9], [1])],
                                    [_gt([[0, 0, 10, 10]], [1])], ["a"])
    assert partial["AP50"] == pytest.approx(100) and partial["AP75"] == pytest.approx(0)
    assert partial["AP"] == pytest.approx(100 * 5 / 10)  # COCO: IoU >= t, 0.50..0.70
