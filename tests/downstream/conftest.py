from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from vocgen import make_voc


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """These models are tiny: on a shared 2-core machine, two intra-op threads spent
    ~25x longer waiting on each other than computing (measured), so use one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_voc(tmp_path: Path) -> Path:
    return make_voc(tmp_path / "VOC")
