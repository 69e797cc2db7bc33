"""A third pre-training method is one class: registered, it pre-trains and fine-tunes."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
import yaml
from conftest import tiny_finetune, tiny_pretrain
from torch import nn

from condpretrain.errors import CondPretrainError
from condpretrain.models import resnet10
from condpretrain.registry import PRETRAIN_METHODS
from condpretrain.train.data import normalize, supervised_augment
from condpretrain.train.finetune import finetune
from condpretrain.train.methods import PretrainMethod
from condpretrain.train.metrics import StepOutput
from condpretrain.train.pretrain import pretrain


@dataclass
class RotationTask:
    """Self-supervised: tell by how many quarter turns each image was rotated."""

    model: nn.Module

    def training_step(self, batch, device: torch.device) -> StepOutput:
        images = batch[0]
        turns = torch.arange(len(images)) % 4
        rotated = torch.stack([torch.rot90(image, int(k), dims=(1, 2))
                               for image, k in zip(images, turns, strict=True)])
        logits = self.model(normalize(rotated, device))
        turns = turns.to(device)
        return StepOutput(nn.functional.cross_entropy(logits, turns), len(images),
                          (logits.argmax(1) == turns).sum())


class Rotation(PretrainMethod):
    name = "toy-rotation"
    label = "Rotation (toy)"
    arch = "resnet10"
    epochs = 2
    lr = 0.02
    finetune_epochs = 1
    finetune_lr = 0.002

    def build(self, classes: int, images: int, global_batch: int) -> nn.Module:
        return self.resnet(4)

    def augment(self):
        return supervised_augment(self.config.resolution)

    def task(self, model: nn.Module) -> RotationTask:
        return RotationTask(model)


def test_a_registered_method_pretrains_and_its_recipe_fine_tunes(pool4, target6, tmp_path):
    with PRETRAIN_METHODS.registered(Rotation):
        assert "toy-rotation" in PRETRAIN_METHODS.names()
        # arch, epochs and lr left unset: the method's defaults
        config = tiny_pretrain(mode="toy-rotation", arch=None, epochs=None, lr=None)
        result = pretrain(str(pool4), tmp_path / "pre", config)
        ft = finetune(str(target6), tmp_path / "ft",
                      tiny_finetune(epochs=None, lr=None,
                                    init=str(tmp_path / "pre" / "backbone.pt"))).result
    assert "toy-rotation" not in PRETRAIN_METHODS
    assert result.result["mode"] == "toy-rotation" and result.result["epochs"] == 2
    saved = yaml.safe_load((tmp_path / "pre" / "config.yaml").read_text())["config"]
    assert (saved["arch"], saved["epochs"], saved["lr"]) == ("resnet10", 2, 0.02)
    metrics = [json.loads(x) for x in (tmp_path / "pre" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [0, 1] and all(m["loss"] > 0 for m in metrics)
    assert all(0 <= m["accuracy"] <= 1 for m in metrics)  # it counted its own hits
    cost = json.loads((tmp_path / "pre" / "run.json").read_text())
    assert cost["mode"] == "toy-rotation" and cost["status"] == "done"
    assert cost["flops"] == pytest.approx(2 * 48 * 3 * cost["flops_per_image"])
    missing, unexpected = resnet10().load_state_dict(
        torch.load(tmp_path / "pre" / "backbone.pt", weights_only=True), strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and not unexpected
    # backbone: auto read the mode beside --init and took the toy's fine-tuning recipe
    assert ft["backbone_kind"] == "toy-rotation"
    assert (ft["lr"], ft["epochs"]) == (0.002, 1)


def test_a_subclass_with_another_name_is_a_method_too(pool4, tmp_path):
    from condpretrain.train.methods.supervised import Supervised

    class Relabelled(Supervised):
        name = "toy-supervised"

    with PRETRAIN_METHODS.registered(Relabelled):
        result = pretrain(str(pool4), tmp_path / "run", tiny_pretrain(mode="toy-supervised",
                                                                      epochs=1))
    assert result.result["classes"] == 4 and (tmp_path / "run" / "backbone.pt").is_file()


def test_unknown_mode_is_a_one_line_error(pool4, tmp_path):
    with pytest.raises(CondPretrainError, match="--mode") as err:
        pretrain(str(pool4), tmp_path / "run", tiny_pretrain(mode="no-such-method"))
    assert "\n" not in str(err.value)


def test_built_in_defaults_come_from_the_method_classes():
    supervised, moco = PRETRAIN_METHODS.get_class("supervised"), PRETRAIN_METHODS.get_class("moco")
    assert (supervised.arch, supervised.epochs, supervised.default_lr(256)) == (
        "resnet34", 90, 0.01)
    assert (moco.arch, moco.epochs, moco.default_lr(512)) == ("resnet50", 200, 0.06)
    assert (moco.flop_factor, moco.views, moco.drop_last) == (4.0, 2, True)
    assert (moco.finetune_lr, moco.finetune_epochs) == (0.001, 100)
    assert supervised.needs_labels and not moco.needs_labels
