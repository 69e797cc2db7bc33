"""Downstream metrics: segmentation by confusion matrix, detection AP.

Detection reports two families, both over the same predictions:

* ``AP50`` / ``AP75`` / ``AP``: the Pascal VOC protocol (greedy matching by score,
  ``difficult`` objects ignored, the VOC2007 11-point interpolation), at IoU 0.5, 0.75
  and averaged over 0.50:0.95. This is what Detectron2's ``PascalVOCDetectionEvaluator``
  computes and so what MoCo and the paper report for VOC; it is small and verified
  against hand-computed cases in the tests.
* ``coco``: the COCO evaluator's AP / AP50 / AP75 (101-point interpolation), from the
  maintained ``faster-coco-eval`` package (or ``pycocotools``) when installed
  (``pip install condpretrain[detection]``); ``None`` otherwise. Difficult objects are
  passed as crowd regions, which COCO's matcher ignores the way VOC's does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from condpretrain.log import get_logger

log = get_logger(__name__)

IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


# -- segmentation ---------------------------------------------------------------------------
def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = 255) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts; rows are the true class, columns the
    predicted one; pixels labelled ``ignore_index`` are left out."""
    keep = target != ignore_index
    index = target[keep].long() * num_classes + pred[keep].long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes).cpu()


def segmentation_scores(confusion: torch.Tensor | np.ndarray) -> dict[str, object]:
    """mIoU, mAcc (mean class pixel accuracy) and allAcc (overall pixel accuracy).

    Means are over classes present in the ground truth or the prediction (a class absent
    from both has no defined IoU); on VOC val every class is present, so this is the
    plain mean over 21 classes."""
    conf = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(conf)
    gt = conf.sum(1)
    pred = conf.sum(0)
    union = gt + pred - tp
    iou = np.divide(tp, union, out=np.full_like(tp, np.nan), where=union > 0)
    acc = np.divide(tp, gt, out=np.full_like(tp, np.nan), where=gt > 0)
    total = conf.sum()
    return {
        "mIoU": float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0,
        "mAcc": float(np.nanmean(acc)) if np.isfinite(acc).any() else 0.0,
        "allAcc": float(tp.sum() / total) if total > 0 else 0.0,
        "per_class_IoU": [None if np.isnan(v) else float(v) for v in iou],
    }


# -- detection ----------------------------------------------------------------------------------
@dataclass
class Detections:
    """One image's predictions: (n, 4) x1 y1 x2 y2 boxes, scores, labels (1-based)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


@dataclass
class GroundTruth:
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of continuous x1 y1 x2 y2 boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def voc07_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """The VOC2007 11-point AP: mean over t in {0, 0.1, ..., 1} of the best precision
    at recall >= t (0 where that recall is never reached)."""
    ap = 0.0
    for t in np.linspace(0, 1, 11):
        reached = recall >= t - 1e-12
        ap += float(precision[reached].max()) if reached.any() else 0.0
    return ap / 11


def voc_class_ap(detections: Sequence[Detections], truths: Sequence[GroundTruth],
                 label: int, iou_threshold: float) -> float | None:
    """AP of one class with VOC matching; None when the class has no non-difficult
    object (the devkit's AP is undefined there)."""
    gt_boxes = [t.boxes[t.labels == label] for t in truths]
    gt_difficult = [t.difficult[t.labels == label] for t in truths]
    positives = int(sum((~d).sum() for d in gt_difficult))
    if positives == 0:
        return None
    image_ids, scores, boxes = [], [], []
    for i, det in enumerate(detections):
        keep = det.labels == label
        image_ids.extend([i] * int(keep.sum()))
        scores.append(det.scores[keep])
        boxes.append(det.boxes[keep].reshape(-1, 4))
    if not image_ids:
        return 0.0
    scores_all = np.concatenate(scores)
    boxes_all = np.concatenate(boxes)
    order = np.argsort(-scores_all, kind="stable")
    taken = [np.zeros(len(b), bool) for b in gt_boxes]
    tp = np.zeros(len(order))
    fp = np.zeros(len(order))
    for rank, d in enumerate(order):
        img = image_ids[d]
        if len(gt_boxes[img]) == 0:
            fp[rank] = 1
            continue
        overlaps = box_iou(boxes_all[d], gt_boxes[img])[0]
        best = int(overlaps.argmax())
        if overlaps[best] > iou_threshold:  # strictly greater, as in the devkit
            if gt_difficult[img][best]:
                continue  # neither right nor wrong
            if not taken[img][best]:
                tp[rank] = taken[img][best] = 1
            else:
                fp[rank] = 1  # a duplicate of an already found object
        else:
            fp[rank] = 1
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / positives
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return voc07_ap(recall, precision)


def voc_detection_scores(detections: Sequence[Detections], truths: Sequence[GroundTruth],
                         class_names: Sequence[str]) -> dict[str, object]:
    """AP50, AP75 and AP (mean over IoU 0.50:0.95), each the mean over classes of the
    VOC2007 11-point AP, in percent as Detectron2 reports them."""
    per_threshold: dict[float, list[float]] = {}
    per_class50: dict[str, float | None] = {}
    for thr in IOU_THRESHOLDS:
        values = []
        for label, name in enumerate(class_names, start=1):
            ap = voc_class_ap(detections, truths, label, thr)
            if thr == 0.5:
                per_class50[name] = None if ap is None else 100 * ap
            if ap is not None:
                values.append(ap)
        per_threshold[thr] = values
    means = {thr: 100 * float(np.mean(v)) if v else 0.0 for thr, v in per_threshold.items()}
    return {"AP": float(np.mean(list(means.values()))), "AP50": means[0.5],
            "AP75": means[0.75], "per_class_AP50": per_class50}


def coco_evaluator_name() -> str | None:
    """The installed COCO evaluator, preferring the maintained faster-coco-eval."""
    for name in ("faster_coco_eval", "pycocotools"):
        try:
            __import__(name)
            return name
        except ImportError:
            continue
    return None


def coco_detection_scores(detections: Sequence[Detections], truths: Sequence[GroundTruth],
                          class_names: Sequence[str]) -> dict[str, float] | None:
    """COCO-style AP / AP50 / AP75 (percent) by the installed evaluator, or None."""
    evaluator = coco_evaluator_name()
    if evaluator is None:
        log.warning("no COCO evaluator installed (pip install 'condpretrain[detection]'); "
                    "reporting the VOC-protocol AP only")
        return None
    images, annotations, results = [], [], []
    for i, (det, gt) in enumerate(zip(detections, truths, strict=True)):
        images.append({"id": i + 1, "width": 1, "height": 1})
        for box, label, difficult in zip(gt.boxes, gt.labels, gt.difficult, strict=True):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1,
                                "category_id": int(label), "bbox": [float(box[0]), float(box[1]), w, h],
                                "area": w * h, "iscrowd": int(bool(difficult))})
        for box, score, label in zip(det.boxes, det.scores, det.labels, strict=True):
            results.append({"image_id": i + 1, "category_id": int(label), "score": float(score),
                            "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]),
                                     float(box[3] - box[1])]})
    if not annotations:
        return None
    if not results:
        return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "evaluator": evaluator}
    dataset = {"images": images, "annotations": annotations,
               "categories": [{"id": i, "name": n} for i, n in enumerate(class_names, 1)]}
    stats = _run_coco(evaluator, dataset, results)
    return {"AP": 100 * max(stats[0], 0.0), "AP50": 100 * max(stats[1], 0.0),
            "AP75": 100 * max(stats[2], 0.0), "evaluator": evaluator}


def _run_coco(evaluator: str, dataset: dict, results: list[dict]) -> list[float]:
    import contextlib
    import io

    if evaluator == "faster_coco_eval":
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
    else:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    # Both print their tables; the library never prints, so their stdout is swallowed.
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats[:3]]
