from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from imagegen import make_image_folder, make_target  # noqa: E402

# Deterministic and light on a 2-core machine.
torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _library_logging():
    """Undo what an in-process CLI call does to logging, so caplog sees every record."""
    import logging

    yield
    library = logging.getLogger("condpretrain")
    library.handlers.clear()
    library.propagate = True
    library.setLevel(logging.NOTSET)


@pytest.fixture(autouse=True, scope="session")
def _private_index_cache(tmp_path_factory: pytest.TempPathFactory):
    """Tests never write the pool index cache into the user's home."""
    import os

    os.environ["CONDPRETRAIN_INDEX_CACHE"] = str(tmp_path_factory.mktemp("index-cache"))

POOL_CLASSES = {"stripes_a": "stripes", "stripes_b": "stripes", "noise_a": "noise", "noise_b": "noise"}
TARGET_CLASSES = {"warm": "stripes", "ring": "rings"}


@pytest.fixture(scope="session")
def two_part_pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pool made of two visually distinct parts: warm stripes and cold noise (2 classes each)."""
    return make_image_folder(tmp_path_factory.mktemp("data") / "pool", POOL_CLASSES, per_class=24)


@pytest.fixture(scope="session")
def stripes_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A labelled target that resembles the pool's stripes part (two classes by structure)."""
    return make_target(tmp_path_factory.mktemp("data") / "target", TARGET_CLASSES, train=16, test=8)
