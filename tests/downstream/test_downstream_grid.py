"""A grid with a detection and a segmentation target, through the real pipeline: each
cell selects from the pool for its VOC target, pre-trains, runs the target's task from
the pre-trained backbone, and the report shows AP50 and mIoU tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from vocgen import make_voc

from condpretrain import api
from condpretrain.errors import CondPretrainError
from condpretrain.experiment import Experiment, parse_experiment, read_results


def test_detect_and_segment_cells_end_to_end(tmp_path: Path, two_part_pool: Path):
    voc = make_voc(tmp_path / "VOC2007", train=6, test=3)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({
        "preset": "quick", "pool": [str(two_part_pool)],
        "targets": {"det": {"path": str(voc), "task": "detect",
                            "detect": {"iterations": 2, "precise_bn": 1}},
                    "seg": {"path": str(voc), "task": "segment"}},
        "methods": ["random"], "budgets": [0.25], "resolutions": [16],
        "baselines": ["random-init"],
        "select": {"filter_resolution": 16},
        "pretrain": {"epochs": 1, "batch_size": 16},
        "segment": {"epochs": 1}}))
    out = tmp_path / "out"
    assert api.run(path, out).ran == 4
    rows = {(r["target"], r["method"]): r for r in read_results(out / "results.csv")}
    for method in ("random-init", "random"):
        det, seg = rows[("det", method)], rows[("seg", method)]
        assert det["task"] == "detect" and seg["task"] == "segment"
        assert all(0 <= float(det[c]) <= 100 for c in ("ap50", "ap", "ap75"))
        assert all(0 <= float(seg[c]) <= 100 for c in ("miou", "macc", "allacc"))
        assert det["top1"] == "" and float(det["finetune_device_hours"]) > 0
    # the subset cells start from the one backbone pre-trained on the subset
    pretrained = out / rows[("det", "random")]["pretrain_dir"]
    assert rows[("seg", "random")]["pretrain_dir"] != rows[("det", "random")]["pretrain_dir"]
    result = json.loads((out / rows[("det", "random")]["finetune_dir"] / "result.json")
                        .read_text())
    assert result["task"] == "detection" and result["init"] == str(pretrained / "backbone.pt")
    final = torch.load(out / rows[("det", "random")]["finetune_dir"] / "model_final.pt",
                       weights_only=True)
    backbone = torch.load(pretrained / "backbone.pt", weights_only=True)
    # the detector's stem (C4Backbone's first module) is that backbone's, two small
    # warm-up steps later: far closer to it than the weights' own size
    moved = (final["backbone.0.weight"] - backbone["conv1.weight"]).abs().max()
    assert moved < 0.1 * backbone["conv1.weight"].abs().mean()
    assert api.run(path, out).ran == 0
    markdown = api.report(out).markdown.read_text()
    assert "Detection AP50 (%)" in markdown and "Segmentation mIoU (%)" in markdown


@pytest.mark.parametrize("methods, refused", [
    (["random", "clustering-avg"], ["clustering-avg"]),
    (["active-learning", "fuse:random,inverse-active-learning"],
     ["active-learning", "fuse:random,inverse-active-learning"]),
    (["random", "domain-classifier", "clustering-min@moco:target"], []),
])
def test_methods_needing_labels_are_refused_before_any_work(tmp_path: Path, methods: list,
                                                            refused: list):
    """A VOC folder has no class labels: methods reading a target-trained model cannot
    score for it, which the grid says at its start, naming the target and the methods."""
    voc = make_voc(tmp_path / "VOC2007", train=4, test=2)
    config = parse_experiment({"pool": "pool", "targets": {"det": {"path": str(voc),
                                                                   "task": "detect"}},
                               "methods": methods})
    experiment = Experiment(config, tmp_path / "out")
    if not refused:
        experiment.prepare()
        return
    with pytest.raises(CondPretrainError) as info:
        experiment.prepare()
    message = str(info.value)
    assert message.startswith("targets.det: ") and "unlabelled" in message
    assert f"methods {', '.join(refused)} need" in message
    assert not (tmp_path / "out").exists()  # nothing written, nothing run
