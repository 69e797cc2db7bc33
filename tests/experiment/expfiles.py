"""Shared by the experiment-file tests: writing a file, and the one-line error a bad
file must give."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from condpretrain.errors import CondPretrainError
from condpretrain.experiment import load_experiment


def refused(path: Path, key: str) -> str:
    """The error loading ``path`` gives: one line naming ``key`` and the file."""
    with pytest.raises(CondPretrainError) as info:
        load_experiment(path)
    message = str(info.value)
    assert key in message and str(path) in message and "\n" not in message, message
    return message


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path
