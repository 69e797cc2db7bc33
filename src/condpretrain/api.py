"""The Python API; each function mirrors one CLI command and takes its dataclass config.

    import condpretrain as cp
    cp.select(["imagenet=/data/imagenet/train"], "/data/cars", "runs/cars-dc",
              cp.SelectConfig(method="domain-classifier", fraction=0.12))

Each command group adds its entry points here (one import line and the name in __all__).
"""

from __future__ import annotations

from condpretrain.config import FinetuneConfig, PretrainConfig, SelectConfig, build_config
from condpretrain.errors import CondPretrainError

__all__ = [
    "CondPretrainError",
    "SelectConfig",
    "PretrainConfig",
    "FinetuneConfig",
    "build_config",
]
