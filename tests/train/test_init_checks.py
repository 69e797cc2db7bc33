"""A bad ``--init`` fails before the image cache is built, in one short line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_finetune, tiny_pretrain

from condpretrain.errors import CondPretrainError
from condpretrain.models import build_resnet, save_backbone
from condpretrain.train.finetune import finetune
from condpretrain.train.pretrain import pretrain


class Planted:
    """Any class: a weights-only load refuses a file that names it."""


def bad_inits(folder: Path) -> dict[str, Path]:
    folder.mkdir(exist_ok=True)
    files = {"objects": folder / "objects.pt", "junk": folder / "junk.pt",
             "other-arch": folder / "resnet18.pt"}
    torch.save({"model": Planted()}, files["objects"])
    files["junk"].write_bytes(b"not a checkpoint" * 10)
    save_backbone(build_resnet("resnet18"), files["other-arch"])
    return files


@pytest.fixture
def no_cache(monkeypatch):
    def built(*args, **kwargs):
        raise AssertionError("the image cache was built before --init was checked")

    monkeypatch.setattr("condpretrain.train.common.image_source", built)


@pytest.mark.parametrize("kind", ["objects", "junk", "other-arch"])
def test_pretrain_checks_init_before_the_cache(pool4, tmp_path, no_cache, kind):
    init = bad_inits(tmp_path / "inits")[kind]
    with pytest.raises(CondPretrainError) as caught:
        pretrain([str(pool4)], tmp_path / "run", tiny_pretrain(init=str(init)))
    message = str(caught.value)
    assert message.startswith(f"--init: {init}") and "\x1b" not in message
    assert len(message) - len(str(init)) < 150


@pytest.mark.parametrize("kind", ["objects", "junk", "other-arch"])
def test_finetune_checks_init_before_the_cache(target6, tmp_path, no_cache, kind):
    init = bad_inits(tmp_path / "inits")[kind]
    with pytest.raises(CondPretrainError) as caught:
        finetune(str(target6), tmp_path / "run", tiny_finetune(init=str(init)))
    message = str(caught.value)
    assert message.startswith(f"--init: {init}") and "\x1b" not in message
    assert len(message) - len(str(init)) < 150
