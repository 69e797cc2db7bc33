"""Faster R-CNN R50-C4 on Pascal VOC, as in MoCo and Detectron2, from torchvision parts.

The C4 design: the ResNet stem through res4 (``layer3``, stride 16, 1024 channels for
ResNet-50) is the one feature map for the RPN and for RoI pooling (RoIAlign 14x14);
res5 (``layer4``, whose first block halves 14 to 7) then global average pooling is
the per-RoI box head. This reuses every pre-trained layer, which is why MoCo measures
pre-training with it.

``detect(voc, out, config)`` trains on the union of the ``trainval`` splits of one or
more VOC folders (MoCo's setting: VOC2007 + VOC2012) and evaluates on the first folder's
``test`` split (VOC2007 test) (the registered task ``detect``, see
:mod:`condpretrain.downstream.task`); see :mod:`condpretrain.downstream.metrics` for the
AP figures. Box arithmetic stays in fp32 under autocast and the box losses are
Detectron2's L1 (:mod:`condpretrain.downstream.boxes`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.models.resnet import ResNet
from torchvision.ops import FrozenBatchNorm2d

from condpretrain.config import DetectConfig
from condpretrain.device import autocast
from condpretrain.dist import DistContext, gather, unwrap
from condpretrain.downstream.boxes import (
    C4RoIAlign,
    Fp32AnchorGenerator,
    Fp32RegionProposalNetwork,
    Fp32RoIHeads,
)
from condpretrain.downstream.metrics import (
    Detections,
    GroundTruth,
    coco_detection_scores,
    voc_detection_scores,
)
from condpretrain.downstream.task import DownstreamTask
from condpretrain.downstream.voc import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VOC_CLASSES,
    DetectionDataset,
    VocImage,
    detection_collate,
    load_detection_split,
)
from condpretrain.log import get_logger, progress
from condpretrain.models import build_resnet, load_backbone
from condpretrain.registry import DOWNSTREAM_TASKS
from condpretrain.train.loop import Schedule
from condpretrain.train.metrics import StepOutput

log = get_logger(__name__)


def stage_channels(stage: nn.Sequential) -> int:
    """Output channels of a ResNet stage, BasicBlock or Bottleneck."""
    last = stage[-1]
    conv = getattr(last, "conv3", None) or last.conv2
    return conv.out_channels


class C4Backbone(nn.Sequential):
    """Stem + res2..res4: one stride-16 feature map."""

    def __init__(self, resnet: ResNet) -> None:
        super().__init__(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool,
                         resnet.layer1, resnet.layer2, resnet.layer3)
        self.out_channels = stage_channels(resnet.layer3)


class Res5BoxHead(nn.Module):
    """res5 on each 14x14 RoI, then global average pooling: (R, C, 14, 14) -> (R, C5).
    ``extra_norm``: MoCo's ``Res5ROIHeadsExtraNorm``, one more BatchNorm on res5's output
    before the pooling (SyncBN under torchrun, as the backbone's)."""

    def __init__(self, resnet: ResNet, extra_norm: bool = False) -> None:
        super().__init__()
        self.res5 = resnet.layer4
        self.out_channels = stage_channels(resnet.layer4)
        self.norm = nn.BatchNorm2d(self.out_channels) if extra_norm else nn.Identity()

    def forward(self, rois: torch.Tensor) -> torch.Tensor:
        return self.norm(self.res5(rois)).mean(dim=(2, 3))


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d by a FrozenBatchNorm2d holding the same statistics."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


def build_detector(config: DetectConfig, num_classes: int = len(VOC_CLASSES)) -> GeneralizedRCNN:
    """Faster R-CNN C4; the backbone from ``config.init`` when given (never downloaded)."""
    resnet = build_resnet(config.arch)
    if config.init:
        load_backbone(resnet, config.init, config.arch)
    if config.norm == "frozen":
        freeze_batchnorm(resnet)
    backbone = C4Backbone(resnet)
    # Every box in fp32 whatever the autocast dtype (see condpretrain.downstream.boxes).
    anchors = Fp32AnchorGenerator(sizes=(tuple(config.anchor_sizes),),
                                  aspect_ratios=((0.5, 1.0, 2.0),))
    # Pre-NMS counts are Detectron2's C4 defaults (one level, so no per-level split).
    rpn = Fp32RegionProposalNetwork(
        anchors, RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0]),
        fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=256, positive_fraction=0.5,
        pre_nms_top_n={"training": 12000, "testing": 6000},
        post_nms_top_n={"training": config.proposals_train, "testing": config.proposals_test},
        nms_thresh=0.7)
    head = Res5BoxHead(resnet, extra_norm=config.res5_norm)
    roi_heads = Fp32RoIHeads(
        C4RoIAlign(), head, detectron2_predictor(head.out_channels, num_classes + 1),
        fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=config.rois_per_image,
        positive_fraction=0.25, bbox_reg_weights=None, score_thresh=0.05, nms_thresh=0.5,
        detections_per_img=100)
    transform = GeneralizedRCNNTransform(
        min_size=tuple(config.min_size_train), max_size=config.max_size,
        image_mean=IMAGENET_MEAN.flatten().tolist(), image_std=IMAGENET_STD.flatten().tolist())
    model = GeneralizedRCNN(backbone, rpn, roi_heads, transform)
    return model


def detectron2_predictor(in_channels: int, classes: int) -> FastRCNNPredictor:
    """Class scores and per-class deltas, initialised as Detectron2's FastRCNNOutputLayers:
    N(0, 0.01) and N(0, 0.001), zero bias. torchvision keeps nn.Linear's default (std
    0.013 at 2,048 inputs), so its first deltas are 13x larger and the box loss starts
    from random boxes."""
    predictor = FastRCNNPredictor(in_channels, classes)
    nn.init.normal_(predictor.cls_score.weight, std=0.01)
    nn.init.normal_(predictor.bbox_pred.weight, std=0.001)
    nn.init.zeros_(predictor.cls_score.bias)
    nn.init.zeros_(predictor.bbox_pred.bias)
    return predictor


def _set_min_size(model: GeneralizedRCNN, sizes: tuple[int, ...]) -> None:
    model.transform.min_size = tuple(sizes)


def to_model_input(images: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """uint8 images -> float in [0, 1] on ``device`` (the detector's transform normalises
    and resizes them there)."""
    return [im.to(device, non_blocking=True).float().div_(255) for im in images]


@dataclass
class DetectionStep:
    """Faster R-CNN's summed losses on a batch of (images, targets); the parts are logged."""

    model: nn.Module

    def training_step(self, batch: Any, device: torch.device) -> StepOutput:
        images, targets = batch
        images = to_model_input(images, device)
        targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
        losses = self.model(images, targets)
        return StepOutput(sum(losses.values()), len(images), parts=losses)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on normalisation layers (Detectron2's WEIGHT_DECAY_NORM = 0)."""
    norm_types = (nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm)
    norm, other = [], []
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if param.requires_grad:
                (norm if isinstance(module, norm_types) else other).append(param)
    return [{"params": other, "weight_decay": weight_decay},
            {"params": norm, "weight_decay": 0.0}]


@torch.no_grad()
def predict(model: GeneralizedRCNN, items: list[VocImage], ctx: DistContext,
            device: torch.device, amp: bool, batch_size: int, workers: int,
            min_size: int) -> list[Detections] | None:
    """Detections for ``items`` in order (on rank 0; None elsewhere). Each process
    predicts every world_size-th image; results meet on rank 0.

    Detectron2 tests one image at a time. A batch is padded to its largest image, and in
    eval mode BatchNorm turns that padding into non-zero features that the borders of the
    smaller images then see: so the images are batched by size (as far as they go), and
    a batch of one size gives what one image at a time gives."""
    net = unwrap(model)
    train_sizes = net.transform.min_size
    _set_min_size(net, (min_size,))
    net.eval()
    indices = sorted(range(ctx.rank, len(items), ctx.world_size),
                     key=lambda i: (items[i].width, items[i].height, i))
    loader = DataLoader(Subset(DetectionDataset(items, train=False), indices),
                        batch_size=batch_size, num_workers=workers,
                        collate_fn=detection_collate)
    found: dict[int, Detections] = {}
    position = iter(indices)
    for images, _ in progress(loader, total=len(loader), desc="detect test", unit="batch"):
        with autocast(device, amp):
            outputs = net(to_model_input(images, device))
        for out in outputs:
            found[next(position)] = Detections(out["boxes"].float().cpu().numpy(),
                                               out["scores"].float().cpu().numpy(),
                                               out["labels"].cpu().numpy())
    _set_min_size(net, train_sizes)
    net.train()
    parts = gather(found, ctx)
    if not ctx.is_main:
        return None
    merged = {k: v for part in parts for k, v in part.items()}
    return [merged[i] for i in range(len(items))]


def evaluate(detections: list[Detections], items: list[VocImage]) -> dict[str, Any]:
    truths = [GroundTruth(i.boxes, i.labels, i.difficult) for i in items]
    scores = voc_detection_scores(detections, truths, VOC_CLASSES)
    scores["coco"] = coco_detection_scores(detections, truths, VOC_CLASSES)
    return scores


@DOWNSTREAM_TASKS.register
class Detection(DownstreamTask[VocImage]):
    """Faster R-CNN C4 on VOC, Detectron2's schedule: warm-up, then steps, per iteration."""

    name = "detect"
    label = "VOC detection"
    order = 0
    task = "detection"
    metrics = ("AP50", "AP", "AP75")
    model_name = "the detector"
    config_class = DetectConfig
    cudnn_benchmark = False  # every batch has other image sizes: autotuning never pays off
    summary = ("Faster R-CNN R50-C4 on VOC: train on VOC07+12 trainval, AP50/AP/AP75 on "
               "VOC07 test")
    description = ("Train Faster R-CNN with a C4 backbone from --init on the trainval splits "
                   "of every --voc folder (MoCo's setting: --voc VOCdevkit/VOC2007 --voc "
                   "VOCdevkit/VOC2012) and evaluate on the first folder's test split: AP50 "
                   "(VOC07 11-point), AP, AP75.")
    voc_folders = None  # --voc repeated: train on all, test on the first
    collate = staticmethod(detection_collate)

    def __init__(self, voc: str | Path | Sequence[str | Path], config: DetectConfig) -> None:
        super().__init__(voc, config)
        self.sync_bn = config.norm == "bn"

    def load(self, split: str) -> list[VocImage]:
        return load_detection_split(self.voc, split)

    def train_items(self) -> list[VocImage]:
        """``train_split`` of every folder (VOC2007 and VOC2012 ids never clash; items
        carry their own paths anyway)."""
        return [item for folder in self.vocs
                for item in load_detection_split(folder, self.config.train_split)]

    def test_items(self) -> list[VocImage]:
        return load_detection_split(self.vocs[0], self.config.test_split)

    def build(self) -> nn.Module:
        return build_detector(self.config)

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        return param_groups(model, self.config.weight_decay)

    def train_dataset(self, items: list[VocImage]) -> DetectionDataset:
        return DetectionDataset(items, train=True)

    def schedule(self, train_images: int) -> Schedule:
        config = self.config
        schedule = Schedule.by_iterations(config.iterations, config.log_every,
                                          max(train_images / config.batch_size, 1e-9))
        log.info("%d iterations x %d images = %.1f epochs of %d training images (%s)",
                 config.iterations, config.batch_size, _epochs(schedule), train_images,
                 " + ".join(str(v) for v in self.vocs))
        return schedule

    def result_fields(self, schedule: Schedule) -> dict[str, Any]:
        return {"iterations": schedule.iterations, "epochs": round(_epochs(schedule), 2),
                "train_folders": [str(v) for v in self.vocs], "test_folder": str(self.vocs[0])}

    def batch_groups(self, items: list[VocImage]) -> list[int] | None:
        """Landscape (0) and portrait or square (1) images, Detectron2's two buckets: a
        batch of both is padded to a square of the longer side (about 1.4x the pixels of
        a 4:3 image)."""
        if not self.config.aspect_grouping:
            return None
        return [0 if item.width > item.height else 1 for item in items]

    def precise_bn_iterations(self) -> int:
        return self.config.precise_bn

    def lr_factor(self, iterations: int) -> Callable[[int], float]:
        config = self.config
        return warmup_multistep(config.lr_steps, config.lr_gamma, config.warmup_iterations,
                                config.warmup_factor)

    def training_task(self, model: nn.Module, device: torch.device) -> DetectionStep:
        return DetectionStep(model)

    def evaluate(self, model: nn.Module, items: list[VocImage], ctx: DistContext,
                 device: torch.device) -> dict[str, Any] | None:
        config = self.config
        detections = predict(model, items, ctx, device, config.amp, config.eval_batch_size,
                             config.workers, config.min_size_test)
        if detections is None:
            return None
        return {**evaluate(detections, items),
                "detections": int(sum(len(d.scores) for d in detections))}


def _epochs(schedule: Schedule) -> float:
    return (schedule.iterations or 0) / schedule.iterations_per_epoch


def warmup_multistep(steps: Iterable[int], gamma: float, warmup: int,
                     warmup_factor: float) -> Callable[[int], float]:
    """Detectron2's WarmupMultiStepLR as an lr factor: x``gamma`` at each of ``steps``,
    after a linear warm-up from ``warmup_factor`` over ``warmup`` iterations."""
    steps = sorted(steps)

    def factor(i: int) -> float:
        value = gamma ** sum(1 for s in steps if i >= s)
        if i < warmup:
            alpha = i / warmup
            value *= warmup_factor * (1 - alpha) + alpha
        return value

    return factor


def detect(voc: str | Path | Sequence[str | Path], out: str | Path,
           config: DetectConfig | None = None, resume: bool = False) -> dict[str, Any]:
    """Train Faster R-CNN C4 on the train split of ``voc`` (one folder or several, e.g.
    ``["VOCdevkit/VOC2007", "VOCdevkit/VOC2012"]``), evaluate on the first one's test
    split; the result, on every process (the run folder ``out``: see ``DownstreamTask.run``)."""
    return Detection(voc, config or DetectConfig()).run(out, resume)


__all__ = ["Detection", "build_detector", "detect", "predict", "evaluate", "warmup_multistep",
           "C4Backbone", "Res5BoxHead", "C4RoIAlign", "freeze_batchnorm", "detectron2_predictor"]
