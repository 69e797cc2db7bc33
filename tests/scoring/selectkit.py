"""Shared by the scoring tests: the quick select config, and what a subset picked."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from condpretrain.config import SelectConfig, build_config


def quick(**overrides) -> SelectConfig:
    return build_config(SelectConfig, "quick", device="cpu", **overrides)


def picked_families(subset_csv: Path) -> Counter:
    """How many images of each family (the label's prefix) a subset holds."""
    with open(subset_csv) as handle:
        return Counter(row["label"].split("_")[0] for row in csv.DictReader(handle))
