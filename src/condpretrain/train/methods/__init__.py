"""Pre-training methods, by name in ``PRETRAIN_METHODS`` (importing this package
registers the built-in ones: supervised and MoCo-v2)."""

from condpretrain.registry import PRETRAIN_METHODS
from condpretrain.train.methods import moco, supervised  # noqa: F401  (they register)
from condpretrain.train.methods.base import PretrainMethod

__all__ = ["PRETRAIN_METHODS", "PretrainMethod"]
