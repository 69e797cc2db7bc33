"""Model structure: C4 split, dilation like torchvision's, PSA attention semantics."""

from __future__ import annotations

import torch
from torchvision.models import resnet50

from condpretrain.config import DetectConfig, SegmentConfig, build_config
from condpretrain.downstream.detection import build_detector
from condpretrain.downstream.segmentation import build_psanet, dilate_resnet, psa_attention
from condpretrain.models import build_resnet


def test_dilation_matches_torchvision():
    ours = dilate_resnet(build_resnet("resnet50"))
    ref = resnet50(weights=None, replace_stride_with_dilation=[False, True, True])
    for (name, a), (_, b) in zip(ours.named_modules(), ref.named_modules(), strict=True):
        if isinstance(a, torch.nn.Conv2d):
            assert (a.stride, a.dilation, a.padding) == (b.stride, b.dilation, b.padding), name


def test_c4_channels_for_resnet50():
    model = build_detector(build_config(DetectConfig, "paper"))
    assert model.backbone.out_channels == 1024
    assert model.roi_heads.box_predictor.cls_score.in_features == 2048
    assert model.roi_heads.box_predictor.cls_score.out_features == 21


def test_psa_collect_and_distribute_are_transposes():
    mask = torch.randn(1, 9, 2, 2)  # 3x3 over-complete mask on a 2x2 map
    collect = psa_attention(mask, (3, 3), distribute=False)
    distribute = psa_attention(mask, (3, 3), distribute=True)
    # collect[i, j]: mask at j for offset (i - j) + centre; position j=0 (0,0), i=3 (1,1)
    assert collect[0, 3, 0] == mask[0, 2 * 3 + 2, 0, 0]
    assert distribute[0, 0, 3] == mask[0, 2 * 3 + 2, 0, 0]
    assert torch.equal(distribute, collect.transpose(1, 2))


def test_psanet_shapes_train_and_eval():
    config = build_config(SegmentConfig, "quick")
    model = build_psanet(config)
    out, aux = model(torch.randn(2, 3, 33, 33))
    assert out.shape == aux.shape == (2, 21, 33, 33)
    assert model.eval()(torch.randn(1, 3, 33, 33)).shape == (1, 21, 33, 33)
