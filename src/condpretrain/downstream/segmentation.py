"""PSANet (point-wise spatial attention) with a dilated ResNet on VOC2012 masks.

Following Zhao et al. (ECCV 2018) and their semseg code: a ResNet whose res4/res5
strides become dilations (output stride 8), a PSA module whose *collect* branch lets
each position gather information from all others and whose *distribute* branch lets
each position send its own, both with attention maps predicted over an over-complete
(2h-1) x (2w-1) window and aligned to the feature map; an auxiliary head on res4 (loss
weight 0.4); SGD with the poly schedule, the new layers at 10x the learning rate.

``segment(voc, out, config)`` (the registered task ``segment``, see
:mod:`condpretrain.downstream.task`) trains on ``train`` and reports mIoU / mAcc / allAcc on
``val`` (the paper's ``test`` masks are not public), predicting as semseg's test does: the
image resized to a longer side of 512, crops of the training size slid over it, each also
seen flipped, the scores resized back.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision.models.resnet import ResNet

from condpretrain.config import SegmentConfig
from condpretrain.device import autocast, to_device
from condpretrain.dist import DistContext, gather, unwrap
from condpretrain.downstream.detection import stage_channels
from condpretrain.downstream.metrics import confusion_matrix, segmentation_scores
from condpretrain.downstream.task import DownstreamTask
from condpretrain.downstream.voc import (
    IGNORE_INDEX,
    SEG_CLASSES,
    SegmentationDataset,
    load_segmentation_split,
)
from condpretrain.errors import CondPretrainError
from condpretrain.log import get_logger, progress
from condpretrain.models import build_resnet, load_backbone
from condpretrain.registry import DOWNSTREAM_TASKS
from condpretrain.train.loop import Schedule
from condpretrain.train.metrics import StepOutput

log = get_logger(__name__)

OUTPUT_STRIDE = 8


def dilate_resnet(model: ResNet) -> ResNet:
    """Output stride 8: what ``replace_stride_with_dilation=[False, True, True]`` builds
    for Bottleneck ResNets, done in place so BasicBlock ones (resnet10/18/34, which
    torchvision refuses to dilate) work too. Weights and their names are unchanged."""
    _dilate_stage(model.layer3, previous=1, dilation=2)
    _dilate_stage(model.layer4, previous=2, dilation=4)
    return model


def _dilate_stage(stage: nn.Sequential, previous: int, dilation: int) -> None:
    for index, block in enumerate(stage):
        convs = [c for c in (block.conv1, block.conv2) if c.kernel_size == (3, 3)]
        for position, conv in enumerate(convs):
            # The first 3x3 of the first block keeps the previous dilation (as torchvision).
            d = previous if index == 0 and position == 0 else dilation
            conv.stride, conv.dilation, conv.padding = (1, 1), (d, d), (d, d)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)


def _conv_bn_relu(cin: int, cout: int, kernel: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


@lru_cache(maxsize=16)
def _collect_index(h: int, w: int, mask_h: int, mask_w: int) -> torch.Tensor:
    """index[i, j]: the channel of the over-complete mask predicted at position j that
    weighs position i, i.e. the offset of i from j, centred in the mask window."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[:, None] - ys[None, :] + (mask_h - 1) // 2
    dx = xs[:, None] - xs[None, :] + (mask_w - 1) // 2
    return dy * mask_w + dx  # (hw, hw)


def psa_attention(mask: torch.Tensor, mask_size: tuple[int, int], distribute: bool) -> torch.Tensor:
    """(n, mask_h*mask_w, h, w) over-complete maps -> (n, hw, hw) attention A, used as
    out[:, :, j] = sum_i x[:, :, i] A[i, j]; the equivalent of semseg's ``psa_mask``.

    collect: A[i, j] = mask at j for the offset of i from j (j gathers from i).
    distribute: A[i, j] = mask at i for the offset of j from i (i sends to j)."""
    n, _, h, w = mask.shape
    mask_h, mask_w = mask_size
    if 2 * h - 1 > mask_h or 2 * w - 1 > mask_w:
        raise CondPretrainError(f"PSA: a {h}x{w} feature map needs a mask of at least "
                                f"{2 * h - 1}x{2 * w - 1}, the model has {mask_h}x{mask_w}")
    index = _collect_index(h, w, mask_h, mask_w).to(mask.device)
    flat = mask.reshape(n, mask_h * mask_w, h * w)
    gathered = torch.gather(flat, 1, index.unsqueeze(0).expand(n, -1, -1))
    return gathered.transpose(1, 2) if distribute else gathered


class PointwiseSpatialAttention(nn.Module):
    """PSANet's bi-directional PSA (psa_type 2, non-compact, softmax-normalised)."""

    def __init__(self, in_channels: int, mid_channels: int, feature_size: int,
                 shrink_factor: int) -> None:
        super().__init__()
        self.shrink = shrink_factor
        h = (feature_size - 1) // shrink_factor + 1
        self.mask_size = (2 * h - 1, 2 * h - 1)
        channels = self.mask_size[0] * self.mask_size[1]
        self.reduce_collect = nn.Sequential(*_conv_bn_relu(in_channels, mid_channels))
        self.reduce_distribute = nn.Sequential(*_conv_bn_relu(in_channels, mid_channels))
        self.attention_collect = nn.Sequential(*_conv_bn_relu(mid_channels, mid_channels),
                                               nn.Conv2d(mid_channels, channels, 1, bias=False))
        self.attention_distribute = nn.Sequential(*_conv_bn_relu(mid_channels, mid_channels),
                                                  nn.Conv2d(mid_channels, channels, 1,
                                                            bias=False))
        self.project = nn.Sequential(*_conv_bn_relu(2 * mid_channels, in_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, C, H, W) -> (n, 2C, H, W): the input and its attended context."""
        size = x.shape[-2:]
        parts = []
        for reduce, attend, distribute in (
                (self.reduce_collect, self.attention_collect, False),
                (self.reduce_distribute, self.attention_distribute, True)):
            feat = reduce(x)
            if self.shrink != 1:
                shrunk = [(s - 1) // self.shrink + 1 for s in size]
                feat = F.interpolate(feat, size=shrunk, mode="bilinear", align_corners=True)
            n, c, h, w = feat.shape
            weights = psa_attention(attend(feat), self.mask_size, distribute).softmax(dim=1)
            parts.append(torch.bmm(feat.reshape(n, c, h * w), weights.to(feat.dtype))
                         .reshape(n, c, h, w))
        context = self.project(torch.cat(parts, 1))
        if self.shrink != 1:
            context = F.interpolate(context, size=size, mode="bilinear", align_corners=True)
        return torch.cat([x, context], 1)


class PSANet(nn.Module):
    def __init__(self, resnet: ResNet, num_classes: int, crop_size: int,
                 shrink_factor: int) -> None:
        super().__init__()
        dilate_resnet(resnet)
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.layer1, self.layer2 = resnet.layer1, resnet.layer2
        self.layer3, self.layer4 = resnet.layer3, resnet.layer4
        c3, c4 = stage_channels(resnet.layer3), stage_channels(resnet.layer4)
        feature_size = (crop_size - 1) // OUTPUT_STRIDE + 1
        self.psa = PointwiseSpatialAttention(c4, c4 // 4, feature_size, shrink_factor)
        self.classifier = nn.Sequential(*_conv_bn_relu(2 * c4, c4 // 4, 3), nn.Dropout2d(0.1),
                                        nn.Conv2d(c4 // 4, num_classes, 1))
        self.aux = nn.Sequential(*_conv_bn_relu(c3, c3 // 4, 3), nn.Dropout2d(0.1),
                                 nn.Conv2d(c3 // 4, num_classes, 1))

    def backbone_modules(self) -> list[nn.Module]:
        return [self.stem, self.layer1, self.layer2, self.layer3, self.layer4]

    def head_modules(self) -> list[nn.Module]:
        return [self.psa, self.classifier, self.aux]

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits at input size; while training also the auxiliary (res4) logits."""
        size = x.shape[-2:]
        x = self.layer2(self.layer1(self.stem(x)))
        c3 = self.layer3(x)
        out = self.classifier(self.psa(self.layer4(c3)))
        out = F.interpolate(out, size=size, mode="bilinear", align_corners=True)
        if not self.training:
            return out
        aux = F.interpolate(self.aux(c3), size=size, mode="bilinear", align_corners=True)
        return out, aux


def build_psanet(config: SegmentConfig, num_classes: int = SEG_CLASSES) -> PSANet:
    resnet = build_resnet(config.arch)
    if config.init:
        load_backbone(resnet, config.init, config.arch)
    return PSANet(resnet, num_classes, config.crop_size, config.shrink_factor)


@dataclass
class SegmentationStep:
    """Pixel cross-entropy of the main and (weighted) auxiliary outputs; both are logged."""

    model: nn.Module
    aux_weight: float

    def training_step(self, batch: Any, device: torch.device) -> StepOutput:
        images, masks = batch
        images, masks = to_device(images, device), masks.to(device, non_blocking=True)
        out, aux = self.model(images)
        main = F.cross_entropy(out.float(), masks, ignore_index=IGNORE_INDEX)
        aux_loss = F.cross_entropy(aux.float(), masks, ignore_index=IGNORE_INDEX)
        return StepOutput(main + self.aux_weight * aux_loss, len(images),
                          parts={"loss_main": main, "loss_aux": aux_loss})


def param_groups(model: PSANet, lr: float, head_lr_mult: float) -> list[dict[str, Any]]:
    """The pre-trained backbone at ``lr``, the new layers at ``head_lr_mult`` x ``lr``."""
    def params(modules: list[nn.Module]) -> list[nn.Parameter]:
        return [p for m in modules for p in m.parameters() if p.requires_grad]

    return [{"params": params(model.backbone_modules()), "lr": lr},
            {"params": params(model.head_modules()), "lr": lr * head_lr_mult}]


@torch.no_grad()
def predict_logits(model: nn.Module, image: torch.Tensor, crop: int, device: torch.device,
                   amp: bool, flip: bool = True, base_size: int = 0) -> torch.Tensor:
    """(classes, H, W) scores of one normalised (3, H, W) image, as semseg's single-scale
    test: the image resized so that its longer side is ``base_size`` (0: as it is), crops
    of the training size slid over it (:func:`slide_crops`), the scores resized back."""
    h, w = image.shape[-2:]
    image = image.to(device)
    if base_size:
        image = resize_longer_side(image, base_size)
    scores = slide_crops(model, image, crop, device, amp, flip)
    if scores.shape[-2:] != (h, w):
        scores = F.interpolate(scores[None], size=(h, w), mode="bilinear",
                               align_corners=False)[0]
    return scores


def resize_longer_side(image: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (OpenCV's INTER_LINEAR: no antialiasing) to a longer side of ``size``,
    the shorter one rounded in proportion, as semseg's test does at scale 1."""
    h, w = image.shape[-2:]
    new = (size, round(size / h * w)) if h > w else (round(size / w * h), size)
    if new == (h, w):
        return image
    return F.interpolate(image[None], size=new, mode="bilinear", align_corners=False)[0]


def slide_crops(model: nn.Module, image: torch.Tensor, crop: int, device: torch.device,
                amp: bool, flip: bool = True, windows_per_forward: int = 4) -> torch.Tensor:
    """Crops of ``crop`` slid with a 2/3 stride over ``image`` (centred padding with the
    mean colour where it is smaller, as semseg's ``scale_process``), their softmax
    averaged, each crop also seen mirrored. Up to ``windows_per_forward`` crops (and
    their mirror images) go through one forward, where semseg runs a crop and its mirror
    at a time: eval-mode BN sees each image on its own, so only the launches change."""
    _, h, w = image.shape
    pad_h, pad_w = max(crop - h, 0), max(crop - w, 0)
    top, left = pad_h // 2, pad_w // 2
    padded = F.pad(image, (left, pad_w - left, top, pad_h - top), value=0.0)
    ph, pw = padded.shape[-2:]
    stride = max(1, math.ceil(crop * 2 / 3))
    rows = max(math.ceil((ph - crop) / stride), 0) + 1
    cols = max(math.ceil((pw - crop) / stride), 0) + 1
    corners = [(min(r * stride, ph - crop), min(c * stride, pw - crop))
               for r, c in itertools.product(range(rows), range(cols))]
    total = counts = None
    for start in range(0, len(corners), windows_per_forward):
        chunk = corners[start:start + windows_per_forward]
        windows = torch.stack([padded[:, y:y + crop, x:x + crop] for y, x in chunk])
        if flip:
            windows = torch.cat([windows, windows.flip(-1)])
        with autocast(device, amp):
            scores = model(windows).float().softmax(1)
        if flip:
            scores = (scores[:len(chunk)] + scores[len(chunk):].flip(-1)) / 2
        if total is None:
            total = torch.zeros(scores.shape[1], ph, pw, device=device)
            counts = torch.zeros(1, ph, pw, device=device)
        for (y, x), window_scores in zip(chunk, scores, strict=True):
            total[:, y:y + crop, x:x + crop] += window_scores
            counts[:, y:y + crop, x:x + crop] += 1
    return (total / counts)[:, top:top + h, left:left + w]


def evaluate(model: nn.Module, dataset: SegmentationDataset, ctx: DistContext,
             device: torch.device, amp: bool, crop: int, workers: int,
             flip: bool = True, base_size: int = 0) -> dict[str, Any] | None:
    """Confusion matrix over the split (shards per process, summed on rank 0)."""
    net = unwrap(model)
    net.eval()
    indices = list(range(ctx.rank, len(dataset), ctx.world_size))
    loader = DataLoader(Subset(dataset, indices), batch_size=1, num_workers=workers)
    conf = torch.zeros(SEG_CLASSES, SEG_CLASSES, dtype=torch.int64)
    for image, mask in progress(loader, total=len(loader), desc="segment val", unit="img"):
        pred = predict_logits(net, image[0], crop, device, amp, flip,
                              base_size).argmax(0).cpu()
        conf += confusion_matrix(pred, mask[0], SEG_CLASSES, IGNORE_INDEX)
    net.train()
    parts = gather(conf, ctx)
    if not ctx.is_main:
        return None
    return segmentation_scores(sum(parts))


@DOWNSTREAM_TASKS.register
class Segmentation(DownstreamTask[tuple[Path, Path]]):
    """PSANet on VOC masks, semseg's schedule: epochs of full batches, poly per iteration."""

    name = "segment"
    label = "VOC segmentation"
    order = 1
    task = "segmentation"
    metrics = ("mIoU", "mAcc", "allAcc")
    metrics_percent = False  # fractions, as semseg logs them
    model_name = "PSANet"
    config_class = SegmentConfig
    summary = "PSANet (dilated ResNet-50) on VOC2012: mIoU/mAcc/allAcc on val"
    description = ("Train PSANet with a dilated backbone from --init on VOC SegmentationClass "
                   "masks (train) and evaluate on val: mIoU, mAcc, allAcc.")
    voc_example = "VOCdevkit/VOC2012"

    def load(self, split: str) -> list[tuple[Path, Path]]:
        return load_segmentation_split(self.voc, split)

    def build(self) -> nn.Module:
        return build_psanet(self.config)

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        return param_groups(model, self.config.lr, self.config.head_lr_mult)  # type: ignore[arg-type]

    def train_dataset(self, items: list[tuple[Path, Path]]) -> SegmentationDataset:
        config = self.config
        return SegmentationDataset(items, train=True, crop_size=config.crop_size,
                                   scale_range=(config.scale_min, config.scale_max),
                                   rotate=config.rotate, blur=config.blur)

    def schedule(self, train_images: int) -> Schedule:
        # epochs x full batches per epoch, a metrics line per epoch
        per_epoch = max(train_images // self.config.batch_size, 1)
        return Schedule.by_iterations(self.config.epochs * per_epoch, per_epoch, per_epoch)

    def lr_factor(self, iterations: int) -> Callable[[int], float]:
        return poly(iterations, self.config.poly_power)

    def training_task(self, model: nn.Module, device: torch.device) -> SegmentationStep:
        return SegmentationStep(model, self.config.aux_weight)

    def evaluate(self, model: nn.Module, items: list[tuple[Path, Path]], ctx: DistContext,
                 device: torch.device) -> dict[str, Any] | None:
        config = self.config
        test_set = SegmentationDataset(items, train=False, crop_size=config.crop_size)
        return evaluate(model, test_set, ctx, device, config.amp, config.crop_size,
                        config.workers, config.eval_flip, config.eval_base_size)

    def result_fields(self, schedule: Schedule) -> dict[str, Any]:
        return {"epochs": self.config.epochs, "iterations": schedule.iterations}


def poly(total: int, power: float) -> Callable[[int], float]:
    """PSANet's poly schedule as an lr factor: (1 - i / total) ^ power, per iteration."""
    return lambda i: math.pow(max(1.0 - i / max(total, 1), 0.0), power)


def segment(voc: str | Path, out: str | Path, config: SegmentConfig | None = None,
            resume: bool = False) -> dict[str, Any]:
    """Train PSANet on ``voc``'s train split and score mIoU / mAcc / allAcc on its val
    split; the result, on every process (the run folder ``out``: see ``DownstreamTask.run``)."""
    return Segmentation(voc, config or SegmentConfig()).run(out, resume)


__all__ = ["Segmentation", "PSANet", "PointwiseSpatialAttention", "build_psanet",
           "dilate_resnet", "psa_attention", "predict_logits", "resize_longer_side",
           "slide_crops", "poly", "segment"]
