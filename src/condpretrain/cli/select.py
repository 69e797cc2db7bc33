"""Subcommands of this group (not built yet)."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    pass
