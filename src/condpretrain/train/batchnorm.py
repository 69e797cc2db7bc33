"""Re-estimate batch-norm statistics after training ("precise BN").

A classifier trained for a few hundred steps on a small target has running BN
statistics that still remember the random initialisation (momentum 0.1 forgets slowly),
and in eval mode it can then rank images almost at random. One pass over the training
data with a cumulative average replaces them with the true statistics of the data.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from condpretrain.device import autocast, to_device


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, batches: Iterable, device: torch.device, amp: bool = True
) -> nn.Module:
    """``batches`` yields ``(images, ...)`` tuples; bad samples are masked by ``errors``."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the whole pass
    was_training = model.training
    model.train()
    for images, _, _, errors in batches:
        keep = torch.tensor([not e for e in errors], dtype=torch.bool)
        if keep.sum() > 1:
            with autocast(device, amp):
                model(to_device(images[keep], device))
    for m, momentum in saved:
        m.momentum = momentum
    model.train(was_training)
    return model
