"""The Python API; each function mirrors one CLI command and takes its dataclass config.

    import condpretrain as cp
    cp.select(["imagenet=/data/imagenet/train"], "/data/cars", "runs/cars-dc",
              cp.SelectConfig(method="domain-classifier", fraction=0.12))

Each command group adds its entry points here (one import line and the name in __all__).
"""

from __future__ import annotations

from condpretrain.config import (
    FinetuneConfig,
    PlanConfig,
    PretrainConfig,
    SelectConfig,
    build_config,
)
from condpretrain.demo import demo
from condpretrain.downstream import detect, segment
from condpretrain.errors import CondPretrainError
from condpretrain.experiment import run
from condpretrain.export import export_backbone
from condpretrain.multi_target import select_multi
from condpretrain.plan import plan, plan_file
from condpretrain.report import report
from condpretrain.selection import SelectionResult, reselect, select
from condpretrain.train.common import RunResult
from condpretrain.train.finetune import finetune
from condpretrain.train.pretrain import pretrain

__all__ = [
    "select",
    "reselect",
    "select_multi",
    "SelectionResult",
    "pretrain",
    "finetune",
    "export_backbone",
    "RunResult",
    "CondPretrainError",
    "SelectConfig",
    "PretrainConfig",
    "FinetuneConfig",
    "build_config",
    "run",
    "plan",
    "plan_file",
    "PlanConfig",
    "report",
    "demo",
    "detect",
    "segment",
]
