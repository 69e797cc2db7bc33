"""Supervised pre-training on the pool's own labels (the classes present in the subset)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from condpretrain.registry import PRETRAIN_METHODS
from condpretrain.train.data import supervised_augment
from condpretrain.train.methods.base import PretrainMethod
from condpretrain.train.supervised import SupervisedTask


@PRETRAIN_METHODS.register
class Supervised(PretrainMethod):
    """Cross-entropy over the subset's classes; ResNet-34, 90 epochs, lr 0.01 / 10 per 30."""

    name = "supervised"
    label = "Supervised"
    order = 0
    arch = "resnet34"
    epochs = 90
    lr = 0.01
    needs_labels = True

    def build(self, classes: int, images: int, global_batch: int) -> nn.Module:
        return self.resnet(classes)

    def augment(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return supervised_augment(self.config.resolution, self.config.crop_scale,
                                  self.config.flip)

    def task(self, model: nn.Module) -> SupervisedTask:
        return SupervisedTask(model)


__all__ = ["Supervised"]
