"""Faster R-CNN's box arithmetic in fp32 under any autocast dtype, and Detectron2's losses.

torchvision's detection parts take their box dtype from the network: anchors from the
feature map's dtype, decoded boxes from the regression output's, ground truth from the
proposals'. Under bf16 autocast (the default on A100/H100) a coordinate near 1,000 px
then has a step of 4 px (8 px past 1,024), so anchors, proposals, regression targets,
RoIAlign boxes and the final detections all snap to a coarse grid. The subclasses here
keep every box tensor in fp32 and cast the network's regression and class outputs to
fp32 before they touch a box; the convolutions still run under autocast.

The losses are Detectron2's (``SMOOTH_L1_BETA = 0``, i.e. L1): the RPN sums L1 over the
sampled foreground anchors and BCE over all sampled anchors, both divided by
``batch_size_per_image x images``; Fast R-CNN sums L1 over the foreground RoIs' deltas of
their true class, divided by the number of sampled RoIs. torchvision uses smooth L1 with
beta 1/9 and divides the RPN terms by the anchors actually sampled.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler, BoxCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import roi_align

C4_STRIDE = 16
POOLER_RESOLUTION = 14


@contextlib.contextmanager
def fp32(device: torch.device) -> Iterator[None]:
    """Autocast off: elementwise box arithmetic stays in the dtype of its fp32 inputs."""
    with torch.autocast(device.type, enabled=False):
        yield


class Fp32BoxCoder(BoxCoder):
    """torchvision's (dx, dy, dw, dh) coder, always in fp32: ``decode`` would otherwise
    cast the reference boxes to the regression output's dtype."""

    def encode_single(self, reference_boxes: Tensor, proposals: Tensor) -> Tensor:
        with fp32(reference_boxes.device):
            return super().encode_single(reference_boxes.float(), proposals.float())

    def decode_single(self, rel_codes: Tensor, boxes: Tensor) -> Tensor:
        with fp32(rel_codes.device):
            return super().decode_single(rel_codes.float(), boxes.float())


class Fp32AnchorGenerator(AnchorGenerator):
    """One anchor grid per image in fp32 whatever the feature dtype (torchvision builds
    them in the feature map's). Cell anchors are Detectron2's: width size/sqrt(ratio),
    height size*sqrt(ratio), not rounded to whole pixels as torchvision's are."""

    def generate_anchors(self, scales: list[int], aspect_ratios: list[float],
                         dtype: torch.dtype = torch.float32,
                         device: torch.device | None = None) -> Tensor:
        sizes = torch.as_tensor(scales, dtype=torch.float64)
        root = torch.as_tensor(aspect_ratios, dtype=torch.float64).sqrt()
        # ratio-major, as torchvision orders them (the RPN head's channels follow it)
        half_w = (sizes[None, :] / root[:, None]).reshape(-1) / 2
        half_h = (sizes[None, :] * root[:, None]).reshape(-1) / 2
        anchors = torch.stack([-half_w, -half_h, half_w, half_h], dim=1)
        return anchors.to(dtype=torch.float32, device=device)  # fp32 whatever ``dtype``

    def forward(self, image_list: ImageList, feature_maps: list[Tensor]) -> list[Tensor]:
        device = feature_maps[0].device
        height, width = image_list.tensors.shape[-2:]
        grid_sizes = [list(f.shape[-2:]) for f in feature_maps]
        strides = [[torch.tensor(height // g[0], device=device),
                    torch.tensor(width // g[1], device=device)] for g in grid_sizes]
        self.set_cell_anchors(torch.float32, device)
        anchors = torch.cat(self.grid_anchors(grid_sizes, strides))  # integer shifts + fp32
        return [anchors for _ in image_list.image_sizes]


def rpn_losses(sampler: BalancedPositiveNegativeSampler, objectness: Tensor, deltas: Tensor,
               labels: list[Tensor], targets: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Detectron2's RPN losses: (objectness BCE, L1 of the foreground deltas), each summed
    over the sampled anchors and divided by ``batch_size_per_image x images``.
    ``objectness`` (A, 1) and ``deltas`` (A, 4) hold every image's anchors in turn."""
    positive, negative = sampler(labels)
    fg = torch.cat(positive).bool()
    sampled = fg | torch.cat(negative).bool()
    normalizer = sampler.batch_size_per_image * len(labels)
    flat_labels, flat_targets = torch.cat(labels), torch.cat(targets)
    box = F.l1_loss(deltas[fg].float(), flat_targets[fg].float(), reduction="sum")
    cls = F.binary_cross_entropy_with_logits(objectness.flatten()[sampled].float(),
                                             flat_labels[sampled].float(), reduction="sum")
    return cls / normalizer, box / normalizer


def fast_rcnn_losses(class_logits: Tensor, box_regression: Tensor, labels: list[Tensor],
                     targets: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Detectron2's Fast R-CNN losses: (mean cross-entropy, L1 of each foreground RoI's
    deltas for its true class summed and divided by the number of sampled RoIs, so one
    foreground RoI weighs the same in every batch)."""
    flat_labels, flat_targets = torch.cat(labels), torch.cat(targets)
    cls = F.cross_entropy(class_logits.float(), flat_labels)
    fg = torch.where(flat_labels > 0)[0]
    per_class = box_regression.reshape(len(flat_labels), -1, 4)
    box = F.l1_loss(per_class[fg, flat_labels[fg]].float(), flat_targets[fg].float(),
                    reduction="sum")
    return cls, box / max(flat_labels.numel(), 1)


class Fp32RegionProposalNetwork(RegionProposalNetwork):
    """torchvision's RPN with fp32 anchors (pass a :class:`Fp32AnchorGenerator`),
    proposals, objectness and regression targets, and Detectron2's L1 losses."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.box_coder = Fp32BoxCoder(self.box_coder.weights)

    def filter_proposals(self, proposals: Tensor, objectness: Tensor,
                         image_shapes: list[tuple[int, int]],
                         num_anchors_per_level: list[int]) -> tuple[list[Tensor], list[Tensor]]:
        # bf16 scores would tie far more often in top-k and NMS
        return super().filter_proposals(proposals.float(), objectness.float(), image_shapes,
                                        num_anchors_per_level)

    def compute_loss(self, objectness: Tensor, pred_bbox_deltas: Tensor, labels: list[Tensor],
                     regression_targets: list[Tensor]) -> tuple[Tensor, Tensor]:
        return rpn_losses(self.fg_bg_sampler, objectness, pred_bbox_deltas, labels,
                          regression_targets)


class Fp32RoIHeads(RoIHeads):
    """torchvision's box-only RoI heads with fp32 proposals, ground truth, regression
    targets and detections (the predictor's outputs are cast before decoding), and
    Detectron2's Fast R-CNN losses. No mask or keypoint branch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.box_coder = Fp32BoxCoder(self.box_coder.weights)

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor],
                image_shapes: list[tuple[int, int]],
                targets: list[dict[str, Tensor]] | None = None
                ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        proposals = [p.float() for p in proposals]
        if self.training:
            # gt boxes take the proposals' dtype in torchvision: fp32 here
            proposals, _, labels, regression_targets = self.select_training_samples(
                proposals, targets)
        pooled = self.box_roi_pool(features, proposals, image_shapes)
        class_logits, box_regression = self.box_predictor(self.box_head(pooled))
        class_logits, box_regression = class_logits.float(), box_regression.float()
        if self.training:
            loss_cls, loss_box = fast_rcnn_losses(class_logits, box_regression, labels,
                                                  regression_targets)
            return [], {"loss_classifier": loss_cls, "loss_box_reg": loss_box}
        boxes, scores, classes = self.postprocess_detections(class_logits, box_regression,
                                                             proposals, image_shapes)
        return [{"boxes": b, "labels": c, "scores": s}
                for b, s, c in zip(boxes, scores, classes, strict=True)], {}


class C4RoIAlign(nn.Module):
    """RoIAlign 14x14 on the single C4 map with half-pixel alignment (Detectron2's
    ROIAlignV2); torchvision's MultiScaleRoIAlign assumes an FPN and is not aligned.
    Boxes and sampling in fp32 (what torchvision's autocast kernel does for the map too);
    the pooled features come back in the map's dtype."""

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor],
                image_shapes: list[tuple[int, int]]) -> Tensor:
        feature = features["0"]
        with fp32(feature.device):
            pooled = roi_align(feature.float(), [p.float() for p in proposals],
                               output_size=POOLER_RESOLUTION, spatial_scale=1.0 / C4_STRIDE,
                               sampling_ratio=0, aligned=True)
        return pooled.to(feature.dtype)


__all__ = ["Fp32BoxCoder", "Fp32AnchorGenerator", "Fp32RegionProposalNetwork", "Fp32RoIHeads",
           "C4RoIAlign", "rpn_losses", "fast_rcnn_losses", "fp32", "C4_STRIDE",
           "POOLER_RESOLUTION"]
