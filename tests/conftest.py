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


@pytest.fixture
def cuda_numerics(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """What CUDA runs with, forced onto the CPU: bf16 autocast, channels_last models and
    batches. On a CPU the code leaves both off (slower there), so without this the suite
    never runs the numerics every GPU run uses. Returns how often each was applied."""
    import contextlib

    import condpretrain.api  # noqa: F401  (every command's modules, imported before the swap)
    import condpretrain.device as device
    import condpretrain.downstream.detection  # noqa: F401
    import condpretrain.downstream.segmentation  # noqa: F401

    used = {"autocast": 0, "model": 0, "batch": 0}

    def bf16(where: torch.device, enabled: bool = True):
        used["autocast"] += enabled
        return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()

    def channels_last_model(model: torch.nn.Module, where: torch.device) -> torch.nn.Module:
        used["model"] += 1
        return model.to(where).to(memory_format=torch.channels_last)

    def channels_last_batch(batch: torch.Tensor, where: torch.device) -> torch.Tensor:
        used["batch"] += batch.dim() == 4
        batch = batch.to(where, non_blocking=True)
        return batch.contiguous(memory_format=torch.channels_last) if batch.dim() == 4 else batch

    swaps = ((device.autocast, bf16), (device.prepare_model, channels_last_model),
             (device.to_device, channels_last_batch))
    for name, module in list(sys.modules.items()):  # every module that imported them by name
        if name == "condpretrain" or name.startswith("condpretrain."):
            for attribute, value in list(vars(module).items()):
                for original, replacement in swaps:
                    if value is original:
                        monkeypatch.setattr(module, attribute, replacement)
    return used
