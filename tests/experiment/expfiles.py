"""Shared by the experiment-file tests: writing a file, and the one-line error a bad
file must give."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from condpretrain import atomic
from condpretrain.data.sources import ImageIndex, write_index_csv
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


def write_scored(out: Path, pool: ImageIndex, scores: np.ndarray, top: int = 3) -> None:
    """A fake select's files: the pool, its scores and the ``top`` best as the subset."""
    out.mkdir(parents=True, exist_ok=True)
    write_index_csv(out / "pool.csv", pool)
    atomic.save_npy(out / "scores.npy", scores)
    chosen = np.argsort(-scores, kind="stable")[:top]
    write_index_csv(out / "subset.csv", pool.take(chosen), score=scores[chosen],
                    rank=np.arange(1, top + 1))
