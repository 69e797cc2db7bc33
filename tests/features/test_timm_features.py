"""``timm:NAME[@WEIGHTS]`` features: tiny timm models with random or file weights, the
offline cache lookup, input conversion, and the one-line error when timm is missing."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from imagegen import write_family
from torch import nn

from condpretrain.config import SelectConfig, build_config
from condpretrain.data.images import IMAGENET_MEAN, IMAGENET_STD
from condpretrain.data.sources import ImageIndex
from condpretrain.errors import CondPretrainError
from condpretrain.features import FEATURES
from condpretrain.features.embeddings import embed_images, feature_dim
from condpretrain.features.timm_source import (
    INSTALL_HINT,
    ModelInput,
    TimmFeatures,
    cached_weights,
    create_headless,
    import_timm,
)
from condpretrain.scoring import ScoringContext

MODEL = "test_resnet"  # timm's own tiny test network: 96 features, mean = std = 0.5


def context(tmp_path: Path, features: str, seed: int = 0) -> ScoringContext:
    config = build_config(SelectConfig, "quick", device="cpu", features=features, seed=seed,
                          batch_size=4)
    return ScoringContext(config, torch.device("cpu"), tmp_path / "cache")


def features_of(ctx: ScoringContext, images: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return TimmFeatures().extractor(None, ctx)(images)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_registered_after_the_other_sources():
    assert FEATURES.names()[-1] == "timm"


def test_missing_timm_is_a_one_line_install_hint(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "timm", None)  # what `import timm` sees uninstalled
    with pytest.raises(CondPretrainError, match="^--features timm:NAME needs timm: ") as info:
        import_timm()
    assert str(info.value).endswith(INSTALL_HINT) and "\n" not in str(info.value)
    with pytest.raises(CondPretrainError, match="needs timm"):
        TimmFeatures().extractor(None, context(tmp_path, f"timm:{MODEL}"))


def test_unknown_model_and_missing_file_are_one_line_errors(tmp_path):
    pytest.importorskip("timm")
    with pytest.raises(CondPretrainError, match="^--features: timm has no model 'no_such_net'"):
        TimmFeatures().extractor(None, context(tmp_path, "timm:no_such_net"))
    with pytest.raises(CondPretrainError, match="no such weights file"):
        TimmFeatures().extractor(None, context(tmp_path, f"timm:{MODEL}@{tmp_path}/w.pth"))


def test_random_weights_give_unit_rows_of_the_models_width_and_warn(tmp_path, caplog):
    timm = pytest.importorskip("timm")
    folder = tmp_path / "pool"
    paths = [str(p) for p in write_family(folder, "stripes", 5)]
    ctx = context(tmp_path, f"timm:{MODEL}", seed=3)
    with caplog.at_level(logging.WARNING):
        extractor = TimmFeatures().extractor(None, ctx)
    assert "RANDOM weights (seed 3)" in caplog.text
    assert ctx.models_used["features"] == {"from": "timm", "model": MODEL,
                                           "weights": "random, seed 3"}
    width = timm.create_model(MODEL, num_classes=0).num_features
    assert feature_dim(extractor, ctx) == width == 96
    rows, skipped = embed_images(ImageIndex(paths, [""] * 5, ["p"] * 5), extractor, ctx,
                                 width, "test")
    assert rows.shape == (5, width) and not skipped
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)


def test_random_weights_follow_the_seed_not_the_global_rng(tmp_path, images):
    pytest.importorskip("timm")
    torch.manual_seed(123)
    first = features_of(context(tmp_path, f"timm:{MODEL}", seed=1), images)
    torch.manual_seed(456)
    again = features_of(context(tmp_path, f"timm:{MODEL}", seed=1), images)
    other = features_of(context(tmp_path, f"timm:{MODEL}", seed=2), images)
    assert torch.equal(first, again) and not torch.allclose(first, other)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_a_weights_file_is_loaded_head_and_all(suffix, tmp_path, images, caplog):
    timm = pytest.importorskip("timm")
    torch.manual_seed(5)
    trained = timm.create_model(MODEL, num_classes=10).eval()  # with a head, as saved
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file(trained.state_dict(), str(path))
    else:
        torch.save({"state_dict": trained.state_dict()}, path)
    ctx = context(tmp_path, f"timm:{MODEL}@{path}", seed=0)
    with caplog.at_level(logging.WARNING):
        got = features_of(ctx, images)
    assert "RANDOM" not in caplog.text
    assert ctx.models_used["features"]["weights"]["path"] == str(path.resolve())
    convert = ModelInput(trained, 32)  # mean = std = 0.5, not ImageNet's
    with torch.inference_mode():
        pooled = trained.forward_features(images * convert.scale + convert.shift)
        expected = trained.forward_head(pooled, pre_logits=True)
    torch.testing.assert_close(got, expected)


def test_another_models_weights_are_refused(tmp_path):
    timm = pytest.importorskip("timm")
    torch.save(timm.create_model("test_vit", num_classes=0).state_dict(), tmp_path / "vit.pth")
    with pytest.raises(CondPretrainError, match=r"^--features: .*vit\.pth (lacks|does not fit)"):
        TimmFeatures().extractor(None, context(tmp_path, f"timm:{MODEL}@{tmp_path}/vit.pth"))


def test_weights_in_the_hub_cache_are_found_offline(tmp_path):
    pytest.importorskip("timm")
    model = create_headless(import_timm(), MODEL, seed=0)
    assert cached_weights(model, tmp_path) is None  # nothing cached, nothing downloaded
    repo = tmp_path / f"models--{model.pretrained_cfg['hf_hub_id'].replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "model.safetensors").write_bytes(b"")
    assert cached_weights(model, tmp_path) == repo / "snapshots" / "abc123" / "model.safetensors"


class Recorder(nn.Module):
    """Stands in for a timm model trained on 0.5/0.5 statistics at 40 px: records its input."""

    def __init__(self, fixed_input_size: bool) -> None:
        super().__init__()
        self.pretrained_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
                               "input_size": (3, 40, 40), "fixed_input_size": fixed_input_size}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.seen = images
        return images.mean(dim=(2, 3))


@pytest.mark.parametrize(("fixed", "size"), [(True, 40), (False, 32)])
def test_images_reach_the_model_in_its_own_statistics_and_size(fixed, size):
    grey = torch.full((1, 3, 32, 32), 0.75)  # a raw pixel value, before any normalisation
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    recorder = Recorder(fixed)
    ModelInput(recorder, 32)((grey - mean) / std)  # what the data loader hands every source
    # (0.75 - 0.5) / 0.5 everywhere; resized only for a model with a fixed input size
    torch.testing.assert_close(recorder.seen, torch.full((1, 3, size, size), 0.5))


def test_a_fixed_size_vit_runs_at_any_filter_resolution(tmp_path, images):
    pytest.importorskip("timm")
    assert features_of(context(tmp_path, "timm:test_vit"), images).shape == (2, 64)


def test_knn_and_clustering_share_cached_timm_embeddings(two_part_pool, stripes_target,
                                                         tmp_path, caplog):
    pytest.importorskip("timm")
    from condpretrain.selection import select

    cache = tmp_path / "cache"
    for method in ("knn", "clustering-min"):
        config = build_config(SelectConfig, "quick", device="cpu", method=method,
                              fraction=0.5, clusters=4, features=f"timm:{MODEL}",
                              cache_dir=str(cache))
        with caplog.at_level(logging.INFO):
            select([str(two_part_pool)], str(stripes_target), tmp_path / method, config)
        scores = np.load(tmp_path / method / "scores.npy")
        assert len(scores) == 96 and np.isfinite(scores).all()
    assert len(list(cache.glob("embeddings-*"))) == 1
    assert "reusing pool embeddings" in caplog.text
    assert not list(cache.glob("target-model-*"))  # timm features need no target training
