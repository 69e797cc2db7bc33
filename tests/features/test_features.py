"""Feature sources: the registry, the choice from the config, and checkpoint loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from condpretrain.config import SelectConfig, build_config
from condpretrain.errors import CondPretrainError
from condpretrain.features import FEATURES, feature_extractor, feature_source, infer_arch
from condpretrain.models import build_resnet, read_backbone, save_backbone
from condpretrain.scoring import ScoringContext


def context_for(tmp_path: Path, features_from: str | None) -> ScoringContext:
    config = build_config(SelectConfig, "quick", device="cpu", features_from=features_from)
    return ScoringContext(config, torch.device("cpu"), tmp_path / "cache")


def test_registry_lists_both_sources_in_order():
    assert FEATURES.names()[:2] == ["target", "checkpoint"]
    assert all(FEATURES[name].summary for name in FEATURES)


def test_the_config_picks_the_source(tmp_path):
    assert feature_source(context_for(tmp_path, None).config) == "target"
    assert feature_source(context_for(tmp_path, "b.pt").config) == "checkpoint"


@pytest.mark.parametrize("arch", ["resnet10", "resnet18"])
def test_checkpoint_features_are_the_backbones_penultimate_layer(arch, tmp_path):
    torch.manual_seed(0)
    original = build_resnet(arch).eval()
    save_backbone(original, tmp_path / "b.pt")
    assert infer_arch(read_backbone(tmp_path / "b.pt"), tmp_path / "b.pt") == arch

    context = context_for(tmp_path, str(tmp_path / "b.pt"))
    extractor = feature_extractor(None, context)  # needs no target at all
    assert context.models_used["features"] == {"from": str(tmp_path / "b.pt"), "arch": arch}

    images = torch.rand(3, 3, 32, 32)
    with torch.inference_mode():
        features = extractor(images)
        original.fc = nn.Identity()
        expected = original(images)
    assert features.shape == (3, 512)
    torch.testing.assert_close(features, expected)
    normalised = nn.functional.normalize(features, dim=1)  # what clustering compares
    assert torch.isfinite(normalised).all()
    torch.testing.assert_close(normalised.norm(dim=1), torch.ones(3))


@pytest.mark.parametrize("content", [
    {"conv1.weight": torch.zeros(8, 3, 3, 3)},  # a state_dict, but of no known ResNet
    "not a state_dict",
])
def test_unfit_checkpoint_is_a_one_line_error(content, tmp_path):
    torch.save(content, tmp_path / "odd.pt")
    context = context_for(tmp_path, str(tmp_path / "odd.pt"))
    with pytest.raises(CondPretrainError, match="^--features-from: ") as info:
        feature_extractor(None, context)
    assert "\n" not in str(info.value)


def test_missing_checkpoint_is_a_one_line_error(tmp_path):
    context = context_for(tmp_path, str(tmp_path / "absent.pt"))
    with pytest.raises(CondPretrainError, match="^--features-from: no such checkpoint"):
        feature_extractor(None, context)


def test_target_source_needs_a_labelled_target(tmp_path):
    with pytest.raises(CondPretrainError, match="give --features-from CKPT"):
        feature_extractor(None, context_for(tmp_path, None))
