"""MoCo-v2 pre-training (no labels): two views per image, a momentum key encoder and a
queue of negatives (``train.moco``); the query encoder is the backbone."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from condpretrain.models import load_backbone
from condpretrain.registry import PRETRAIN_METHODS
from condpretrain.train import photometric
from condpretrain.train.data import moco_v2_augment
from condpretrain.train.methods.base import PretrainMethod
from condpretrain.train.moco import MoCo, MocoTask, bn_splits_for, clamp_queue
from condpretrain.train.photometric import CropAndDraw, blur_kernel_size


@PRETRAIN_METHODS.register
class MocoV2(PretrainMethod):
    """ResNet-50, 200 epochs, lr 0.03 x global batch/256 on a cosine schedule; one
    process: batch-norm statistics per sub-batch (``--moco-bn-splits``)."""

    name = "moco"
    label = "MoCo-v2"
    order = 1
    arch = "resnet50"
    epochs = 200
    lr = 0.03
    lr_batch = 256
    lr_text = "0.03 x global batch/256"
    views = 2  # query and key
    flop_factor = 4.0  # forward + backward of the query (3x) + the key encoder's forward
    drop_last = True  # every step fills a whole batch of the queue
    # The paper's MoCo fine-tuning recipe (supplement): lr 0.001, 100 epochs.
    finetune_epochs = 100
    finetune_lr = 0.001

    queue: int | None = None  # the queue length used (set by build)
    bn_splits: int | None = None  # the BN sub-batches used (set by build)

    def build(self, classes: int, images: int, global_batch: int) -> nn.Module:
        config = self.config
        self.queue = clamp_queue(config.moco_queue, images, global_batch)
        # Under DDP each process's BN already sees its own part of the batch (shuffle-BN).
        self.bn_splits = (bn_splits_for(config.moco_bn_splits, config.batch_size)
                          if self.world_size == 1 else 1)
        model = MoCo(self.arch, config.moco_dim, self.queue, config.moco_momentum,
                     config.moco_temperature, config.moco_mlp, self.bn_splits, config.seed)
        if config.init:
            load_backbone(model.encoder_q, config.init, self.arch)
            model.encoder_k.load_state_dict(model.encoder_q.state_dict())
        return model

    def augment(self) -> Callable[[torch.Tensor], Any]:
        if self.config.moco_augment_on == "device":  # colour steps drawn here, applied there
            return CropAndDraw(self.config.resolution)
        return moco_v2_augment(self.config.resolution)

    def task(self, model: nn.Module) -> MocoTask:
        if self.config.moco_augment_on != "device":
            return MocoTask(model)
        # --compile fuses the colour steps' elementwise passes too (a function, not a module)
        colour = torch.compile(photometric.apply) if self.config.compile else photometric.apply
        return MocoTask(model, blur_kernel_size(self.config.resolution), colour)

    def scheduler(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        """Cosine over the epochs, stepped per epoch."""
        epochs = max(self.epochs, 1)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda e: 0.5 * (1.0 + math.cos(math.pi * e / epochs)))

    def backbone(self, model: nn.Module) -> nn.Module:
        return model.encoder_q  # type: ignore[return-value]

    def info(self) -> dict[str, object]:
        return {"moco_queue": self.queue, "moco_bn_splits": self.bn_splits}


__all__ = ["MocoV2"]
