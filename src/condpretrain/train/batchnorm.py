"""Re-estimate batch-norm statistics after training ("precise BN").

A classifier trained for a few hundred steps on a small target has running BN
statistics that still remember the random initialisation (momentum 0.1 forgets slowly),
and in eval mode it can then rank images almost at random. Even after a long run they
are an exponential average over weights that kept changing. Passes over training data
with the weights fixed and a cumulative average replace them with the statistics of the
final model: fvcore's ``update_bn_stats`` (Detectron2's ``TEST.PRECISE_BN``), which
averages the per-batch means and (unbiased) variances with equal weights, as torch's BN
does with ``momentum=None``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from condpretrain.device import autocast, to_device


@torch.no_grad()
def precise_batchnorm(model: nn.Module, batches: Iterable[Any],
                      forward: Callable[[Any], object]) -> int:
    """Replace the running statistics of every BatchNorm in ``model`` (SyncBatchNorm
    included: its batches are then pooled over the processes) by their plain average over
    ``forward(batch)`` for each of ``batches``, run in training mode without gradients.
    The number of batches forwarded (0 when the model has no BatchNorm: nothing read)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the whole pass
    was_training = model.training
    model.train()
    count = 0
    for batch in batches:
        forward(batch)
        count += 1
    for m, momentum in saved:
        m.momentum = momentum
    model.train(was_training)
    return count


def recalibrate_batchnorm(
    model: nn.Module, batches: Iterable, device: torch.device, amp: bool = True
) -> nn.Module:
    """:func:`precise_batchnorm` over a classifier's batches of ``(images, ..., errors)``;
    bad samples are masked by ``errors``, a batch of fewer than two good ones skipped."""
    def forward(batch: Any) -> None:
        images, _, _, errors = batch
        keep = torch.tensor([not e for e in errors], dtype=torch.bool)
        if keep.sum() > 1:
            with autocast(device, amp):
                model(to_device(images[keep], device))

    precise_batchnorm(model, batches, forward)
    return model


__all__ = ["precise_batchnorm", "recalibrate_batchnorm"]
