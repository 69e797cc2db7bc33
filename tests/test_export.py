from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torchvision

from condpretrain.errors import CondPretrainError
from condpretrain.export import detectron2_name, export_backbone, load_detectron2
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


@pytest.mark.parametrize("state", [
    # ResNet-like names, another network: a tiny CNN
    {"conv1.weight": torch.zeros(8, 3, 3, 3), "bn1.weight": torch.ones(8),
     "fc.weight": torch.zeros(2, 8)},
    # a ResNet-18 missing its last stage
    {k: v for k, v in torchvision.models.resnet18().state_dict().items()
     if not k.startswith("layer4")},
], ids=["tiny-cnn", "resnet18-without-layer4"])
def test_export_refuses_what_is_not_a_whole_resnet(tmp_path, state, capsys):
    from condpretrain.cli import main

    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(CondPretrainError, match="is not the backbone of a torchvision ResNet"):
        export_backbone(tmp_path / "other.pt", tmp_path / "x.pkl")
    assert not (tmp_path / "x.pkl").exists()
    assert main(["export", "--backbone", str(tmp_path / "other.pt"), "--out",
                 str(tmp_path / "x.pkl")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_export_takes_every_torchvision_resnet(tmp_path):
    model = torchvision.models.resnext101_32x8d()
    save_backbone(model, tmp_path / "backbone.pt")
    out = export_backbone(tmp_path / "backbone.pt", tmp_path / "x.pt", fmt="torchvision")
    assert torch.load(out, weights_only=True).keys() == {
        k for k in model.state_dict() if not k.startswith("fc.")}


class _Payload:
    """Unpickling it with pickle.load calls ``open(marker, "w")``: creates a file."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_load_detectron2_reads_back_an_export(tmp_path):
    model = torchvision.models.resnet18()
    save_backbone(model, tmp_path / "backbone.pt")
    weights = load_detectron2(export_backbone(tmp_path / "backbone.pt", tmp_path / "d2.pkl"))
    assert torch.equal(torch.from_numpy(weights["stem.conv1.weight"]), model.conv1.weight.detach())


@pytest.mark.parametrize("protocol", [2, 5])
def test_load_detectron2_reads_other_pickle_protocols(tmp_path, protocol):
    payload = {"model": {"stem.conv1.weight": np.ones((2, 3), np.float32)},
               "matching_heuristics": True}
    (tmp_path / "d2.pkl").write_bytes(pickle.dumps(payload, protocol=protocol))
    assert load_detectron2(tmp_path / "d2.pkl")["stem.conv1.weight"].sum() == 6


@pytest.mark.parametrize("planted", ["call", "object-array", "garbage"])
def test_load_detectron2_never_runs_a_planted_pickle(tmp_path, planted):
    marker = tmp_path / "marker"
    path = tmp_path / "d2.pkl"
    if planted == "call":
        path.write_bytes(pickle.dumps({"model": {"w": _Payload(marker)}}))
    elif planted == "object-array":
        path.write_bytes(pickle.dumps({"model": {"w": np.array([_Payload(marker)], dtype=object)}}))
    else:
        path.write_bytes(b"\x80\x04garbage")
    with pytest.raises(CondPretrainError, match="d2.pkl") as err:
        load_detectron2(path)
    assert "\n" not in str(err.value) and not marker.exists()
