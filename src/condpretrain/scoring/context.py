"""What every scorer shares: settings, device, the models it trains once, what it reports.

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
from condpretrain.scoring.target_model import target_model


@dataclass
class ScoringContext:
    """Settings, device and caches of one selection, and what its scorer reports back."""

    config: SelectConfig
    device: torch.device
    cache_dir: Path
    dist: DistContext = field(default_factory=DistContext)
    models_used: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason

    def target_classifier(self, target: Target) -> nn.Module:
        """The classifier trained on the target's labels: trained on first use, then cached
        on disk and shared by every method (and budget) that needs it."""
        return target_model(target, self).model


__all__ = ["ScoringContext"]
