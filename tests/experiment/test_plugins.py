"""A new selection method and a new pre-training method, each registered from this file
alone, run through `condpretrain run` and appear in the report: nothing in the package
is edited or lists them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from condpretrain.cli import main
from condpretrain.experiment import read_results
from condpretrain.registry import PRETRAIN_METHODS, SCORERS
from condpretrain.scoring import Scorer
from condpretrain.scoring.base import map_images


class BrightnessScorer(Scorer):
    name = "toy-brightness"
    label = "Brightness (toy)"
    summary = "brighter pool images first"
    needs_target = False

    def fit(self, target, pool) -> None:
        pass

    def score(self, images) -> np.ndarray:
        return map_images(images, self.context, lambda x: x.mean((1, 2, 3)), 1, "toy")[:, 0]


class ShortSupervised(PRETRAIN_METHODS["supervised"]):
    """The supervised recipe under another name with its own defaults."""

    name = "toy-short"
    label = "Short supervised (toy)"
    arch = "resnet10"
    epochs = 1
    lr = 0.02


def test_toy_scorer_and_toy_method_run_through_the_grid(tmp_path: Path, two_part_pool: Path,
                                                        stripes_target: Path, capsys):
    experiment = tmp_path / "exp.yaml"
    experiment.write_text(yaml.safe_dump({
        # The paper preset leaves arch, epochs and lr to the method's own defaults.
        "preset": "paper", "pool": [str(two_part_pool)], "targets": {"warm": str(stripes_target)},
        "methods": ["toy-brightness"], "modes": ["toy-short"], "budgets": [0.25],
        "resolutions": [16], "baselines": False, "seeds": [0],
        "select": {"filter_resolution": 16, "workers": 0},
        "pretrain": {"batch_size": 16, "workers": 0},
        "finetune": {"epochs": 1, "batch_size": 16, "resolution": 16, "workers": 0},
    }))
    out = tmp_path / "out"
    with SCORERS.registered(BrightnessScorer), PRETRAIN_METHODS.registered(ShortSupervised):
        assert main(["run", str(experiment), "--out", str(out)]) == 0
    assert "toy-brightness" not in SCORERS and "toy-short" not in PRETRAIN_METHODS
    [row] = read_results(out / "results.csv")
    assert (row["method"], row["mode"], row["selected"]) == ("toy-brightness", "toy-short", "24")
    assert 0 <= float(row["top1"]) <= 100 and row["arch"] == "resnet10"
    saved = yaml.safe_load((out / row["pretrain_dir"] / "config.yaml").read_text())["config"]
    assert (saved["mode"], saved["epochs"], saved["lr"]) == ("toy-short", 1, 0.02)
    assert "Brightness (toy)" in (out / "report.md").read_text()
    assert "Brightness (toy)" in capsys.readouterr().out
