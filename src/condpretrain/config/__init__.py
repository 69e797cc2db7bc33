"""Typed configs with the paper's defaults, presets, and YAML in/out.

Every command has one dataclass; each field is declared once with its default, help,
choices and bounds (:func:`~condpretrain.config.options.option`). The CLI flags, the
``--config`` YAML keys and the experiment file's sections are generated from those
declarations and checked by the one validation in :mod:`condpretrain.config.options`.
Field defaults are the paper's setting (the ``paper`` preset); ``quick`` swaps in small
models and short schedules for CPU trials, the demo and tests. Resolution order, last
wins: dataclass defaults -> preset -> YAML file -> explicit flags.
"""

from condpretrain.config.base import PRESET_NAMES, Config
from condpretrain.config.downstream import DetectConfig, SegmentConfig
from condpretrain.config.load import build_config, load_yaml, to_dict
from condpretrain.config.options import (
    Option,
    check_value,
    option,
    option_map,
    options,
    parse_mapping,
)
from condpretrain.config.plan import PlanConfig
from condpretrain.config.select import SelectConfig
from condpretrain.config.train import FinetuneConfig, PretrainConfig

__all__ = [
    "PRESET_NAMES",
    "Config",
    "SelectConfig",
    "PretrainConfig",
    "FinetuneConfig",
    "DetectConfig",
    "SegmentConfig",
    "PlanConfig",
    "build_config",
    "load_yaml",
    "to_dict",
    "Option",
    "option",
    "options",
    "option_map",
    "check_value",
    "parse_mapping",
]
