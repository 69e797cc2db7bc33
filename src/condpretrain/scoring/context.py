"""What every scorer shares: settings, device, the models it trains once, what it reports
(the cached models it used and what they cost, see :mod:`~condpretrain.scoring.cost`).

It is its own module, above :mod:`~condpretrain.scoring.target_model`, because the
context hands out the target-trained classifier: feature sources
(:mod:`condpretrain.features`) reach that model through the context they are given,
so they never import the scoring package (which imports them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from condpretrain.config import SelectConfig
from condpretrain.data.sources import Target
from condpretrain.dist import DistContext
from condpretrain.log import get_logger
from condpretrain.scoring.cost import SharedModel, selection_cost
from condpretrain.scoring.target_model import target_model

log = get_logger(__name__)


@dataclass
class ScoringContext:
    """Settings, device and caches of one selection, and what its scorer reports back."""

    config: SelectConfig
    device: torch.device
    cache_dir: Path
    dist: DistContext = field(default_factory=DistContext)
    models_used: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason
    shared_models: dict[str, SharedModel] = field(default_factory=dict)  # key -> model

    def target_classifier(self, target: Target) -> nn.Module:
        """The classifier trained on the target's labels: trained on first use, then cached
        on disk and shared by every method (and budget) that needs it."""
        return target_model(target, self).model

    def charge_shared(self, path: Path, recorded: dict[str, Any] | None,
                      trained_here: bool) -> None:
        """This selection used the cached model at ``path``: it is charged the training
        cost the file records, whether this run trained it or only loaded it."""
        model = SharedModel.of(path, recorded, trained_here)
        if model.key in self.shared_models:
            return  # used twice in one run: the first use says whether it was trained here
        if model.seconds is None:
            log.warning("%s records no training cost (cached by an older version): its "
                        "training is not charged to this selection", path)
        self.shared_models[model.key] = model

    def cost(self, total_seconds: float) -> dict[str, Any]:
        """What this selection is charged: its own time plus its shared models' training."""
        return selection_cost(total_seconds, self.dist.world_size, self.shared_models.values())


__all__ = ["ScoringContext"]
