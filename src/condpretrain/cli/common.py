"""Flags shared by every command: presets, YAML config, device, seed."""

from __future__ import annotations

import argparse
from typing import Any

from condpretrain.config import PRESET_NAMES


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=PRESET_NAMES, default="paper",
                        help="paper: the paper's models and schedules (default); "
                             "quick: small models, few epochs, for CPU trials")
    parser.add_argument("--config", metavar="YAML", default=None,
                        help="a YAML file of option: value standing for flags (flags win)")
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:1 ...")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers")


def overrides(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    """Flag values the user gave (argparse defaults are None, meaning 'from the preset')."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
