from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from vocgen import make_voc  # noqa: E402


@pytest.fixture
def tiny_voc(tmp_path: Path) -> Path:
    return make_voc(tmp_path / "VOC")
