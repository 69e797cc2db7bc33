"""MoCo's VOC detection recipe: 07+12 trainval -> 07 test, the extra norm after res5,
Detectron2's L1 box losses, and what 24k iterations at batch 16 amount to."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from vocgen import make_voc

from condpretrain.cli import main
from condpretrain.config import DetectConfig, SegmentConfig, build_config
from condpretrain.downstream.boxes import fast_rcnn_losses
from condpretrain.downstream.detection import Detection, build_detector, detect
from condpretrain.downstream.segmentation import Segmentation
from condpretrain.errors import CondPretrainError
from condpretrain.models import build_resnet, save_backbone


@pytest.fixture
def two_vocs(tmp_path: Path) -> tuple[Path, Path]:
    """Two VOC folders of different sizes: 6 + 4 and 5 + 3 images."""
    return (make_voc(tmp_path / "VOC2007", train=6, test=4, seed=0),
            make_voc(tmp_path / "VOC2012", train=5, test=3, seed=1))


def test_trains_on_every_folder_and_tests_on_the_first(two_vocs, tmp_path: Path):
    voc07, voc12 = two_vocs
    backbone = tmp_path / "backbone.pt"
    save_backbone(build_resnet("resnet10"), backbone)
    out = tmp_path / "det"
    code = main(["detect", "--voc", str(voc07), "--voc", str(voc12), "--init", str(backbone),
                 "--out", str(out), "--preset", "quick", "--iterations", "2", "--device", "cpu"])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["train_images"] == 6 + 5 and result["test_images"] == 4  # VOC07's test
    assert result["train_folders"] == [str(voc07), str(voc12)]
    assert result["test_folder"] == str(voc07)
    assert result["epochs"] == round(2 * 2 / 11, 2)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["voc"] == [str(voc07), str(voc12)] and saved["train_images"] == 11


def test_items_are_the_union_and_the_first_test_split(two_vocs):
    voc07, voc12 = two_vocs
    task = Detection([voc07, voc12], build_config(DetectConfig, "quick"))
    train = task.train_items()
    assert len(train) == 11
    assert {item.image_path.parent.parent for item in train} == {voc07, voc12}
    assert {item.image_path.parent.parent for item in task.test_items()} == {voc07}
    # one folder, as a string, still works (the API's old form)
    assert len(Detection(str(voc07), build_config(DetectConfig, "quick")).train_items()) == 6


def test_api_takes_a_list(two_vocs, tmp_path: Path):
    config = build_config(DetectConfig, "quick", iterations=1, device="cpu")
    result = detect(list(two_vocs), tmp_path / "api", config)
    assert result["train_images"] == 11 and result["test_images"] == 4


def test_segmentation_keeps_one_folder(two_vocs, tmp_path: Path, capsys):
    voc07, voc12 = two_vocs
    code = main(["segment", "--voc", str(voc07), "--voc", str(voc12), "--out",
                 str(tmp_path / "seg"), "--preset", "quick"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "takes one VOC folder, got 2" in err
    code = main(["detect", "--voc", str(voc07), "--voc", str(voc07), "--out",
                 str(tmp_path / "det"), "--preset", "quick"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "given twice" in err


def test_one_folder_task_refuses_a_list(two_vocs):
    with pytest.raises(CondPretrainError, match="takes one VOC folder, got 2"):
        Segmentation(list(two_vocs), build_config(SegmentConfig, "quick"))


def test_24k_iterations_are_23_epochs_of_voc07_plus_12():
    task = Detection("VOCdevkit/VOC2007", build_config(DetectConfig, "paper"))
    assert task.result_fields(task.schedule(16551))["epochs"] == pytest.approx(23.2, abs=0.01)
    assert task.result_fields(task.schedule(5011))["epochs"] == pytest.approx(76.6, abs=0.05)


def test_extra_norm_after_res5():
    plain = build_detector(build_config(DetectConfig, "quick"))
    assert isinstance(plain.roi_heads.box_head.norm, nn.Identity)
    model = build_detector(build_config(DetectConfig, "quick", res5_norm=True))
    head = model.roi_heads.box_head
    assert isinstance(head.norm, nn.BatchNorm2d) and head.norm.num_features == 512
    out = head.train()(torch.randn(6, 256, 14, 14))
    # BN (weight 1, bias 0) before the average pooling: each channel averages to ~0
    assert out.shape == (6, 512) and out.mean(0).abs().max() < 1e-4
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # what torchrun gets
    assert isinstance(synced.roi_heads.box_head.norm, nn.SyncBatchNorm)
    with pytest.raises(CondPretrainError, match="--res5-norm needs --norm bn"):
        build_config(DetectConfig, "quick", res5_norm=True, norm="frozen")


def test_fast_rcnn_box_loss_is_l1_over_sampled_rois():
    # 2 images x 2 RoIs, 3 classes (0 = background); 4 deltas per class
    labels = [torch.tensor([0, 2]), torch.tensor([1, 0])]
    targets = [torch.tensor([[9.0, 9, 9, 9], [0, 0, 0, 0.1]]),
               torch.tensor([[1.0, 1, 1, 3], [9, 9, 9, 9]])]
    regression = torch.full((4, 12), 50.0)  # other classes' and background RoIs': ignored
    regression[1, 8:12] = torch.tensor([0.5, -0.5, 0.2, 0.0])  # RoI 1, class 2
    regression[2, 4:8] = torch.tensor([1.0, 1, 1, 1])  # RoI 2, class 1
    cls, box = fast_rcnn_losses(torch.zeros(4, 3), regression, labels, targets)
    assert float(cls) == pytest.approx(math.log(3))
    # |0.5| + |-0.5| + |0.2| + |0.1| + 0 + 0 + 0 + |-2| = 3.3, over 4 sampled RoIs
    assert float(box) == pytest.approx(3.3 / 4)


def test_rpn_losses_are_l1_over_batch_size_per_image_times_images():
    rpn = build_detector(build_config(DetectConfig, "quick")).rpn
    assert rpn.fg_bg_sampler.batch_size_per_image == 256
    labels = [torch.tensor([1.0, 0, -1, 0]), torch.tensor([0.0, 1, 1, -1])]  # all sampled
    targets = [torch.zeros(4, 4), torch.zeros(4, 4)]
    deltas = torch.full((8, 4), 7.0)  # negatives' and ignored anchors': ignored
    deltas[0] = torch.tensor([0.5, -0.25, 0.0, 0.0])
    deltas[5] = torch.tensor([0.05, 0.0, 0.0, 0.0])  # smooth L1 (beta 1/9) would square it
    deltas[6] = torch.tensor([0.0, 0.0, 1.0, 0.0])
    cls, box = rpn.compute_loss(torch.zeros(8, 1), deltas, labels, targets)
    normalizer = 256 * 2
    assert float(cls) == pytest.approx(6 * math.log(2) / normalizer)  # 3 fg + 3 bg sampled
    assert float(box) == pytest.approx((0.75 + 0.05 + 1.0) / normalizer)


def test_predictor_starts_as_detectron2s():
    predictor = build_detector(build_config(DetectConfig, "quick")).roi_heads.box_predictor
    assert float(predictor.cls_score.weight.detach().std()) == pytest.approx(0.01, rel=0.1)
    assert float(predictor.bbox_pred.weight.detach().std()) == pytest.approx(0.001, rel=0.1)
    assert not predictor.cls_score.bias.any() and not predictor.bbox_pred.bias.any()
