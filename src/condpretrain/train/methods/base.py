"""What a pre-training method is: one small class, registered in ``PRETRAIN_METHODS``.

A method says how to pre-train a backbone on a pool (``--mode``); ``train.pretrain``
does the rest (data, run folder, the one training loop, ``backbone.pt``) and looks the
method up by name, so a new method is one file::

    @PRETRAIN_METHODS.register
    class MyMethod(PretrainMethod):
        name = "my-method"
        def build(self, classes, images, global_batch): ...
        def augment(self): ...
        def task(self, model): ...

Class attributes are the method's defaults and facts; an instance is one run's method,
built from its config, whose ``arch`` / ``epochs`` / ``lr`` are the config's values where
given and the method's defaults otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from condpretrain.models import build_resnet, load_backbone
from condpretrain.registry import LAST, PRETRAIN_METHODS

if TYPE_CHECKING:
    from condpretrain.config import PretrainConfig
    from condpretrain.train.loop import TrainTask


class PretrainMethod:
    """Base class: a supervised-style ResNet with a step schedule unless overridden."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""  # how reports show it
    order: ClassVar[int] = LAST  # its place in tables and --help
    # Defaults of the options a config leaves unset (``--help`` shows them; ``lr_text``
    # describes the lr where it is a rule).
    arch: str = "resnet34"
    epochs: int = 90
    lr: float = 0.01
    lr_batch: ClassVar[int | None] = None  # lr x global batch/this, where given
    needs_labels: ClassVar[bool] = False  # trains on the pool's labels
    views: ClassVar[int] = 1  # augmented views of each image per batch
    flop_factor: ClassVar[float] = 3.0  # training FLOPs per image, in forward passes
    drop_last: ClassVar[bool] = False  # drop each epoch's incomplete batch
    # The fine-tuning recipe that suits its backbones (None: FinetuneConfig's defaults).
    finetune_epochs: ClassVar[int | None] = None
    finetune_lr: ClassVar[float | None] = None

    def __init__(self, config: PretrainConfig, world_size: int = 1) -> None:
        self.config = config
        self.world_size = world_size  # processes; the global batch is batch_size x this
        self.arch = config.arch or type(self).arch
        self.epochs = config.epochs if config.epochs is not None else type(self).epochs
        self.lr = (config.lr if config.lr is not None
                   else self.default_lr(config.batch_size, world_size))

    @classmethod
    def default_lr(cls, batch_size: int, world_size: int = 1) -> float:
        """The method's lr; a rule (``lr_batch``) scales it with the GLOBAL batch,
        ``batch_size`` per process x ``world_size`` processes, as the reference recipes."""
        if not cls.lr_batch:
            return cls.lr
        return cls.lr * batch_size * world_size / cls.lr_batch

    # -- what every method defines --------------------------------------------------------
    def build(self, classes: int, images: int, global_batch: int) -> nn.Module:
        """The model to train (``--init`` loaded into its backbone): for ``classes`` pool
        classes (0 without labels), a subset of ``images``, ``global_batch`` per step."""
        raise NotImplementedError

    def augment(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """One uint8 image to one augmented view (``views`` are drawn per image)."""
        raise NotImplementedError

    def task(self, model: nn.Module) -> TrainTask:
        """The loss of a batch for ``model`` (possibly DDP-wrapped)."""
        raise NotImplementedError

    # -- what most methods share ----------------------------------------------------------
    def scheduler(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        """Per epoch: x``lr_gamma`` every ``lr_step_epochs``."""
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=self.config.lr_step_epochs,
                                               gamma=self.config.lr_gamma)

    def backbone(self, model: nn.Module) -> nn.Module:
        """The part of the trained ``model`` saved as ``backbone.pt``."""
        return model

    def info(self) -> dict[str, object]:
        """More fields for the run's ``run.json``."""
        return {}

    def resnet(self, num_classes: int) -> nn.Module:
        """A ResNet of this run's arch, ``--init`` loaded when given."""
        model = build_resnet(self.arch, num_classes=num_classes)
        if self.config.init:
            load_backbone(model, self.config.init, self.arch)
        return model


__all__ = ["PRETRAIN_METHODS", "PretrainMethod"]
