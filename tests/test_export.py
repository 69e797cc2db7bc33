from __future__ import annotations

import pickle

import pytest
import torch
import torchvision

from condpretrain.errors import CondPretrainError
from condpretrain.export import detectron2_name, export_backbone
from condpretrain.models import save_backbone


@pytest.mark.parametrize("key,expected", [
    ("conv1.weight", "stem.conv1.weight"),
    ("bn1.running_mean", "stem.conv1.norm.running_mean"),
    ("layer1.0.conv2.weight", "res2.0.conv2.weight"),
    ("layer3.2.bn3.bias", "res4.2.conv3.norm.bias"),
    ("layer4.0.downsample.0.weight", "res5.0.shortcut.weight"),
    ("layer2.0.downsample.1.weight", "res3.0.shortcut.norm.weight"),
])
def test_detectron2_names(key, expected):
    assert detectron2_name(key) == expected


def test_export_resnet50_backbone(tmp_path):
    model = torchvision.models.resnet50()
    save_backbone(model, tmp_path / "backbone.pt")
    out = export_backbone(tmp_path / "backbone.pt", tmp_path / "model.pkl")
    with open(out, "rb") as handle:
        payload = pickle.load(handle)
    assert payload["matching_heuristics"] is True and "__author__" in payload
    weights = payload["model"]
    assert not any(k.startswith(("fc.", "layer")) for k in weights)
    assert weights["res5.2.conv3.norm.weight"].shape == (2048,)
    assert torch.equal(torch.from_numpy(weights["stem.conv1.weight"]), model.conv1.weight.detach())


def test_export_missing_file_is_an_error(tmp_path):
    with pytest.raises(CondPretrainError, match="--backbone"):
        export_backbone(tmp_path / "none.pt", tmp_path / "x.pkl")
