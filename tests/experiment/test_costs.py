"""Costs in the results table: each row charged what it needed (shared models included,
device-hours = seconds x processes), and totals that count shared work once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from fake_steps import FakePipeline

from condpretrain.experiment import read_results, run
from condpretrain.experiment.results import shared_work, total_device_hours
from condpretrain.experiment.selections import shared_key

MODEL_HOURS = 0.5  # the target-trained model: trained once, used by both methods
OWN_SECONDS = 360.0  # each method's own scoring


class SharingPipeline(FakePipeline):
    """select writes what the real one does: a cost block naming the cached target model,
    trained by the first method that needs it and loaded by the next."""

    def __init__(self, processes: int = 1, cost_block: bool = True) -> None:
        super().__init__()
        self.processes, self.cost_block, self.trained = processes, cost_block, set()

    def select(self, sources, target, out, config):
        result = super().select(sources, target, out, config)
        path = Path(out) / "selection.json"
        info = json.loads(path.read_text())
        info["processes"] = self.processes
        info["timings"]["total"] = OWN_SECONDS
        if self.cost_block:
            key = f"target-model-resnet18-{Path(target).name}-{config.seed}"
            model = {"key": key, "path": f"/cache/{key}.pt", "seconds": MODEL_HOURS * 3600,
                     "processes": 1, "device_hours": MODEL_HOURS,
                     "trained_here": key not in self.trained}
            self.trained.add(key)
            own_hours = OWN_SECONDS * self.processes / 3600
            info["cost"] = {"own_seconds": OWN_SECONDS, "processes": self.processes,
                            "own_device_hours": own_hours, "shared": [model],
                            "seconds": OWN_SECONDS + model["seconds"],
                            "device_hours": own_hours + MODEL_HOURS}
        path.write_text(json.dumps(info))
        return result


@pytest.fixture
def grid_file(tmp_path: Path, two_part_pool: Path, stripes_target: Path) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({
        "preset": "quick", "pool": [f"parts={two_part_pool}"],
        "targets": {"warm": str(stripes_target)},
        "methods": ["clustering-min", "active-learning"], "budgets": [0.1, 0.2],
        "resolutions": [16], "baselines": False}))
    return path


def test_every_method_is_charged_the_shared_model(grid_file: Path, tmp_path: Path):
    run(grid_file, tmp_path / "out", SharingPipeline().steps())
    rows = read_results(tmp_path / "out" / "results.csv")
    assert len(rows) == 4
    reselect_hours = 0.5 / 3600
    for row in rows:
        # before: clustering-min (ran first) 360 s; active-learning the same, model free
        assert float(row["select_seconds"]) == pytest.approx(OWN_SECONDS + 1800 + 0.5)
        assert float(row["select_device_hours"]) == pytest.approx(
            OWN_SECONDS / 3600 + MODEL_HOURS + reselect_hours, rel=1e-5)
        assert shared_work(row)["cache/target-model-resnet18-target-0"] == MODEL_HOURS


def test_two_targets_models_of_one_recipe_are_two_pieces_of_work():
    """Two targets of the same images (a VOC folder for detection and for segmentation)
    train a model of the same key, each in its own cache folder: counted twice."""
    detect = {"key": "domain-classifier-resnet10-0123456789abcdef",
              "path": "/out/cache/voc-detect/domain-classifier-resnet10-0123456789abcdef.pt"}
    segment = {**detect, "path": detect["path"].replace("voc-detect", "voc-segment")}
    assert shared_key(detect) == "voc-detect/" + detect["key"]
    assert shared_key(detect) != shared_key(segment)
    assert shared_key({"key": "k"}) == "k"  # a record without the model's path


def test_device_hours_are_seconds_times_processes(grid_file: Path, tmp_path: Path):
    """A selection written without a cost block: its timings x its processes."""
    run(grid_file, tmp_path / "out", SharingPipeline(processes=4, cost_block=False).steps())
    row = read_results(tmp_path / "out" / "results.csv")[0]
    assert float(row["select_seconds"]) == pytest.approx(OWN_SECONDS + 0.5)
    assert float(row["select_device_hours"]) == pytest.approx((4 * OWN_SECONDS + 0.5) / 3600,
                                                              rel=1e-5)


def test_experiment_total_counts_shared_work_once(grid_file: Path, tmp_path: Path):
    run(grid_file, tmp_path / "out", SharingPipeline().steps())
    rows = read_results(tmp_path / "out" / "results.csv")
    once, charged = total_device_hours(rows), total_device_hours(rows, once=False)
    # two methods x two budgets: scoring once per method, the model once, a pick per row
    assert once["select"] == pytest.approx(2 * OWN_SECONDS / 3600 + MODEL_HOURS + 4 * 0.5 / 3600,
                                           rel=1e-5)
    assert charged["select"] == pytest.approx(4 * (OWN_SECONDS / 3600 + MODEL_HOURS + 0.5 / 3600),
                                              rel=1e-5)
    assert once["total"] == pytest.approx(once["select"] + once["pretrain"] + once["finetune"])


def row(method: str, target: str, select_hours: float, shared: dict[str, float],
        pretrain_dir: str, pretrain_hours: float) -> dict[str, str]:
    return {"target": target, "method": method, "select_device_hours": str(select_hours),
            "select_shared": json.dumps(shared), "pretrain_dir": pretrain_dir,
            "pretrain_device_hours": str(pretrain_hours), "finetune_dir": f"ft/{target}/{method}",
            "finetune_device_hours": "0.25"}


def test_total_over_rows_counts_the_model_and_the_entire_pool_once():
    model = {"target-model-resnet18-abc": 2.0}
    rows = [
        row("clustering-min", "cars", 3.0, {"select/cars/clustering-min/seed0/scores": 1.0,
                                            **model}, "pre/cars/cmin", 5.0),
        row("active-learning", "cars", 2.5, {"select/cars/active-learning/seed0/scores": 0.5,
                                             **model}, "pre/cars/al", 5.0),
        row("entire-pool", "cars", 0.0, {}, "pre/entire-pool/seed0", 40.0),
        row("entire-pool", "birds", 0.0, {}, "pre/entire-pool/seed0", 40.0),
        {"target": "old", "method": "random", "select_device_hours": "0.1"},  # older table
    ]
    once = total_device_hours(rows)
    assert once["select"] == pytest.approx(1.0 + 0.5 + 2.0 + 0.1)  # the model once
    assert once["pretrain"] == pytest.approx(5.0 + 5.0 + 40.0)  # the entire pool once
    assert once["finetune"] == pytest.approx(4 * 0.25)
    charged = total_device_hours(rows, once=False)
    assert charged["select"] == pytest.approx(3.0 + 2.5 + 0.1)
    assert charged["pretrain"] == pytest.approx(90.0)
