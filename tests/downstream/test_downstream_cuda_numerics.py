"""Detection and segmentation under the numerics of a GPU run (bf16 autocast,
channels_last), forced onto the CPU by the ``cuda_numerics`` fixture."""

from __future__ import annotations

import json
import math

import condpretrain as cp
from condpretrain.config import DetectConfig, SegmentConfig


def _losses(run) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_detection_and_segmentation(cuda_numerics, tiny_voc, tmp_path):
    detect = cp.build_config(DetectConfig, "quick", iterations=2, lr_steps=(), log_every=1,
                             device="cpu", workers=0)
    cp.detect(str(tiny_voc), tmp_path / "detect", detect)
    segment = cp.build_config(SegmentConfig, "quick", epochs=1, device="cpu", workers=0)
    cp.segment(str(tiny_voc), tmp_path / "segment", segment)
    for run in ("detect", "segment"):
        assert all(math.isfinite(x) for x in _losses(tmp_path / run))
    assert all(cuda_numerics.values()), cuda_numerics
