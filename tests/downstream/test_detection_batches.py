"""Detection's batches and BN statistics as Detectron2's: aspect-ratio grouping and
precise BN before testing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

from condpretrain.cli import main
from condpretrain.config import DetectConfig, build_config
from condpretrain.dist import DistContext, unwrap
from condpretrain.downstream.detection import Detection, DetectionStep, build_detector, predict
from condpretrain.downstream.voc import load_detection_split


def widen(voc: Path, ids: list[str], width: int) -> None:
    """Make images ``ids`` landscape: the picture pasted on a wider grey canvas (boxes
    stay where they were)."""
    for image_id in ids:
        path = voc / "JPEGImages" / f"{image_id}.jpg"
        with Image.open(path) as image:
            canvas = Image.new("RGB", (width, image.height), (128, 128, 128))
            canvas.paste(image, (0, 0))
        canvas.save(path, quality=95)
        xml = voc / "Annotations" / f"{image_id}.xml"
        xml.write_text(re.sub(r"<width>\d+</width>", f"<width>{width}</width>", xml.read_text()))


@pytest.fixture
def mixed_voc(tiny_voc: Path) -> Path:
    widen(tiny_voc, ["000000", "000002", "000004"], 72)  # 3 of the 6 training images
    return tiny_voc


@pytest.fixture
def batch_shapes(monkeypatch) -> list[set]:
    """The image shapes of every batch a training step is given, from now on."""
    seen: list[set] = []
    original = DetectionStep.training_step

    def spy(self, batch, device):
        seen.append({tuple(image.shape[-2:]) for image in batch[0]})
        return original(self, batch, device)

    monkeypatch.setattr(DetectionStep, "training_step", spy)
    return seen


def _train(voc: Path, out: Path, seen: list[set], extra: list[str]) -> list[set]:
    seen.clear()
    assert main(["detect", "--voc", str(voc), "--out", str(out), "--preset", "quick",
                 "--iterations", "6", "--precise-bn", "0", "--device", "cpu", *extra]) == 0
    return seen[1:]  # the first is the FLOP count's probe (the first images, unshuffled)


def test_batches_hold_one_orientation(mixed_voc: Path, tmp_path: Path, batch_shapes):
    grouped = _train(mixed_voc, tmp_path / "grouped", batch_shapes, [])
    plain = _train(mixed_voc, tmp_path / "plain", batch_shapes, ["--no-aspect-grouping"])
    assert len(grouped) == len(plain) == 6  # two epochs of 3 batches of 2
    # 3 landscape + 3 square an epoch: a pure pair of each, the leftovers (one each) mixed
    assert [len(shapes) for shapes in grouped].count(2) == 2
    assert [len(shapes) for shapes in plain].count(2) > 2  # this seed mixes more


def test_groups_are_landscape_and_the_rest(mixed_voc: Path):
    items = load_detection_split(mixed_voc, "trainval")
    config = build_config(DetectConfig, preset="quick")
    assert Detection(mixed_voc, config).batch_groups(items) == [0, 1, 0, 1, 0, 1]
    config = build_config(DetectConfig, preset="quick", aspect_grouping=False)
    assert Detection(mixed_voc, config).batch_groups(items) is None


@pytest.fixture
def test_time_statistics(monkeypatch) -> dict:
    """The stem BatchNorm's statistics when the test split is scored, from now on."""
    seen: dict = {}
    original = Detection.evaluate

    def spy(self, model, items, ctx, device):
        stem_bn = unwrap(model).backbone[1]
        seen["mean"] = stem_bn.running_mean.clone()
        seen["var"] = stem_bn.running_var.clone()
        return original(self, model, items, ctx, device)

    monkeypatch.setattr(Detection, "evaluate", spy)
    return seen


def _run(voc: Path, out: Path, seen: dict, extra: list[str]) -> dict:
    seen.clear()
    assert main(["detect", "--voc", str(voc), "--out", str(out), "--preset", "quick",
                 "--iterations", "3", "--device", "cpu", *extra]) == 0
    return {**seen, "result": json.loads((out / "result.json").read_text())}


def test_precise_bn_recomputes_what_the_test_sees(tiny_voc: Path, tmp_path: Path,
                                                  test_time_statistics):
    seen = test_time_statistics
    kept = _run(tiny_voc, tmp_path / "kept", seen, ["--precise-bn", "0"])
    precise = _run(tiny_voc, tmp_path / "a", seen, ["--precise-bn", "4"])
    again = _run(tiny_voc, tmp_path / "b", seen, ["--precise-bn", "4"])
    assert kept["result"]["precise_bn_iterations"] == 0
    assert precise["result"]["precise_bn_iterations"] == 4  # 4 batches: past one epoch of 3
    assert (precise["var"] - kept["var"]).abs().max() > 1e-3
    # the running average of 3 steps at momentum 0.1 keeps 73 % of the initial ones (1.0)
    assert (kept["var"] - 1).abs().mean() < (precise["var"] - 1).abs().mean()
    # drawn from the run's seed: the same statistics every time
    assert precise["mean"].equal(again["mean"]) and precise["var"].equal(again["var"])
    assert precise["result"]["AP50"] == again["result"]["AP50"]


def test_precise_bn_has_nothing_to_do_with_frozen_norms(tiny_voc: Path, tmp_path: Path,
                                                        test_time_statistics):
    frozen = _run(tiny_voc, tmp_path / "frozen", test_time_statistics,
                  ["--precise-bn", "4", "--norm", "frozen"])
    assert frozen["result"]["precise_bn_iterations"] == 0


def test_a_run_killed_before_testing_resumes_to_the_same_statistics(
        tiny_voc: Path, tmp_path: Path, test_time_statistics, monkeypatch):
    seen = test_time_statistics
    whole = _run(tiny_voc, tmp_path / "whole", seen, ["--precise-bn", "4"])
    spied = Detection.evaluate

    def killed(self, *args):
        raise KeyboardInterrupt  # after training and precise BN, before any result

    monkeypatch.setattr(Detection, "evaluate", killed)
    assert main(["detect", "--voc", str(tiny_voc), "--out", str(tmp_path / "killed"),
                 "--preset", "quick", "--iterations", "3", "--device", "cpu",
                 "--precise-bn", "4"]) == 130  # interrupted
    assert not (tmp_path / "killed" / "result.json").exists()
    monkeypatch.setattr(Detection, "evaluate", spied)
    resumed = _run(tiny_voc, tmp_path / "killed", seen, ["--precise-bn", "4", "--resume"])
    assert resumed["var"].equal(whole["var"]) and resumed["mean"].equal(whole["mean"])
    assert resumed["result"]["AP50"] == whole["result"]["AP50"]


def test_a_test_batch_mixing_sizes_changes_what_the_smaller_image_gives():
    # why test batches are formed by size: eval-mode BN turns the zero padding of a
    # batch into features that the smaller image's borders see
    torch.manual_seed(0)
    model = build_detector(build_config(DetectConfig, preset="quick")).eval()
    image, same, wider = torch.rand(3, 48, 48), torch.rand(3, 48, 48), torch.rand(3, 48, 80)

    def features(batch: list[torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            return model.backbone(model.transform(batch)[0].tensors)[0]

    alone = features([image])
    torch.testing.assert_close(features([image, same])[..., :alone.shape[-1]], alone,
                               atol=1e-5, rtol=0)
    assert (features([image, wider])[..., :alone.shape[-1]] - alone).abs().max() > 1e-3


def test_test_images_are_batched_by_size(mixed_voc: Path, monkeypatch):
    widen(mixed_voc, ["000006", "000008"], 72)  # test images: 2 landscape, 2 square
    items = load_detection_split(mixed_voc, "test")
    assert [i.width for i in items] == [72, 48, 72, 48]  # in the split's order pairs mix
    batches: list[set] = []
    original = GeneralizedRCNN.forward

    def spy(self, images, targets=None):
        batches.append({tuple(im.shape[-2:]) for im in images})
        return original(self, images, targets)

    monkeypatch.setattr(GeneralizedRCNN, "forward", spy)
    model = build_detector(build_config(DetectConfig, preset="quick"))
    found = predict(model, items, DistContext(), torch.device("cpu"), False, 2, 0, 48)
    assert batches == [{(48, 48)}, {(48, 72)}]
    assert len(found) == 4  # still in the split's order (checked by test_trains_on_...)


def test_the_tested_model_is_saved_with_its_precise_statistics(tiny_voc: Path, tmp_path: Path,
                                                               test_time_statistics):
    run = _run(tiny_voc, tmp_path / "det", test_time_statistics, ["--precise-bn", "4"])
    final = torch.load(tmp_path / "det" / "model_final.pt", weights_only=True)
    assert final["backbone.1.running_var"].equal(run["var"])  # what the test saw
    checkpoint = torch.load(tmp_path / "det" / "checkpoint.pt", weights_only=False)
    trained = checkpoint["model"]["backbone.1.running_var"]
    assert not trained.equal(run["var"])  # the checkpoint keeps training's statistics
    detector = build_detector(build_config(DetectConfig, preset="quick"))
    detector.load_state_dict(final)  # a plain state_dict of the same detector
