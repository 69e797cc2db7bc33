from __future__ import annotations

from pathlib import Path

import pytest
from imagegen import make_image_folder, make_target

from condpretrain.config import FinetuneConfig, PretrainConfig


@pytest.fixture(scope="session")
def pool4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four easily told apart classes, 12 images each, 16 px."""
    return make_image_folder(tmp_path_factory.mktemp("train") / "pool",
                             {"a": "stripes", "b": "noise", "c": "checker", "d": "rings"},
                             per_class=12, size=16)


@pytest.fixture(scope="session")
def target6(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six classes (so top-5 is reported), 6 train and 3 test images each."""
    classes = {"s1": "stripes", "n1": "noise", "c1": "checker", "r1": "rings",
               "s2": "stripes", "n2": "noise"}
    return make_target(tmp_path_factory.mktemp("train") / "target", classes, train=6, test=3,
                       size=16)


def tiny_pretrain(**overrides) -> PretrainConfig:
    values = {**PretrainConfig.PRESETS["quick"], "resolution": 16, "epochs": 2, "lr": 0.01,
              "batch_size": 12, "device": "cpu", "amp": False, **overrides}
    return PretrainConfig(**values)


def tiny_finetune(**overrides) -> FinetuneConfig:
    values = {**FinetuneConfig.PRESETS["quick"], "resolution": 16, "epochs": 2,
              "batch_size": 12, "device": "cpu", "amp": False, **overrides}
    return FinetuneConfig(**values)


def kill_after(monkeypatch, steps: int) -> None:
    """Make the training loop raise after ``steps`` optimizer steps (a killed run)."""
    from condpretrain.train.loop import Trainer

    original = Trainer.train_step
    calls = {"n": 0}

    def step(self, batch):
        calls["n"] += 1
        if calls["n"] > steps:
            raise RuntimeError("injected kill")
        return original(self, batch)

    monkeypatch.setattr(Trainer, "train_step", step)
