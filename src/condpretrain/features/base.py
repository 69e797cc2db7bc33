"""Feature sources: where the image features that clustering compares come from.

A source is one small class: given the target and the selection's context it returns a
network whose output is its penultimate-layer features (the classification head
replaced by an identity), and records in ``context.models_used["features"]`` where
those features came from. Sources register with ``@FEATURES.register``; the config's
``features_from`` picks one (:func:`feature_source`).

This package sits below :mod:`condpretrain.scoring`, which uses it: what a source needs
from scoring (the target-trained classifier) comes through the context it is given, so
nothing here imports the scoring package.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from condpretrain.config import SelectConfig
from condpretrain.data.sources import Target
from condpretrain.device import prepare_model
from condpretrain.registry import FEATURES, LAST


class FeatureContext(Protocol):
    """What a source needs from its caller; a scoring context is one."""

    config: SelectConfig  # ``features_from`` picks the source
    device: torch.device
    models_used: dict[str, Any]

    def target_classifier(self, target: Target) -> nn.Module:
        """The classifier trained on ``target``'s labels (trained once, cached)."""
        ...


class FeatureSource(ABC):
    name: ClassVar[str]
    summary: ClassVar[str]
    order: ClassVar[int] = LAST

    @classmethod
    def block_layout(cls, argument: str) -> dict[str, int] | None:
        """The blocks of the descriptor ``--features NAME:ARGUMENT`` gives, in order, with
        their sizes (see :mod:`condpretrain.features.blocks`); None for one block."""
        return None

    def extractor(self, target: Target | None, context: FeatureContext) -> nn.Module:
        """Penultimate-layer features on ``context.device``, in eval mode."""
        model = self.network(target, context)
        model.fc = nn.Identity()  # the features clustering wants are what the head reads
        return prepare_model(model, context.device).eval()

    @abstractmethod
    def network(self, target: Target | None, context: FeatureContext) -> nn.Module:
        """The whole network (a ResNet), head included. Records where it came from in
        ``context.models_used["features"]``."""


def feature_source(config: SelectConfig) -> str:
    """The source a selection's settings pick: a given checkpoint, else the target model."""
    return "checkpoint" if config.features_from else "target"


def feature_extractor(target: Target | None, context: FeatureContext) -> nn.Module:
    """The feature network of the source that ``context.config`` picks."""
    source = FEATURES.get_class(feature_source(context.config))
    return source().extractor(target, context)


__all__ = ["FEATURES", "FeatureContext", "FeatureSource", "feature_extractor", "feature_source"]
