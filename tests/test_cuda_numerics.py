"""Every training and scoring command under the numerics of a GPU run (bf16 autocast,
channels_last), forced onto the CPU by the ``cuda_numerics`` fixture: each runs and its
losses stay finite."""

from __future__ import annotations

import json
import math

import condpretrain as cp


def _losses(run) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_pretraining_and_fine_tuning(cuda_numerics, two_part_pool, stripes_target, tmp_path):
    for mode, colour in (("supervised", "workers"), ("moco", "workers"), ("moco", "device")):
        config = cp.build_config(cp.PretrainConfig, "quick", mode=mode, arch="resnet10",
                                 resolution=32, epochs=1, batch_size=16, device="cpu", workers=0,
                                 moco_augment_on=colour)
        out = tmp_path / f"{mode}-{colour}"
        cp.pretrain([str(two_part_pool)], out, config)
        assert all(math.isfinite(x) for x in _losses(out))
    config = cp.build_config(cp.FinetuneConfig, "quick", arch="resnet10", resolution=32,
                             epochs=1, batch_size=16, device="cpu", workers=0,
                             init=str(tmp_path / "moco-workers" / "backbone.pt"))
    result = cp.finetune(str(stripes_target), tmp_path / "finetune", config)
    assert math.isfinite(result.result["top1"])
    assert all(cuda_numerics.values()), cuda_numerics  # the GPU numerics did run


def test_selection_methods_that_train_or_embed(cuda_numerics, two_part_pool, stripes_target,
                                               tmp_path):
    for method in ("domain-classifier", "active-learning", "clustering-min", "knn"):
        config = cp.build_config(cp.SelectConfig, "quick", method=method, fraction=0.25,
                                 device="cpu", workers=0)
        cp.select([str(two_part_pool)], str(stripes_target), tmp_path / method, config)
        scores = (tmp_path / method / "pool.csv").read_text().splitlines()[1:]
        assert len(scores) == 96 and "nan" not in "".join(scores).lower()
    assert all(cuda_numerics.values()), cuda_numerics
