"""Honest selection costs: a cached model is charged to every method that needed it, and
device-hours are wall seconds x processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from condpretrain.config import SelectConfig, build_config
from condpretrain.scoring.cost import SharedModel, device_hours, selection_cost
from condpretrain.selection import select


def quick(**overrides) -> SelectConfig:
    return build_config(SelectConfig, "quick", device="cpu", **overrides)


def test_device_hours_scale_with_processes():
    assert device_hours(3600, 1) == pytest.approx(1.0)
    assert device_hours(900, 4) == pytest.approx(1.0)
    cost = selection_cost(900.0, 4, [])
    assert cost["own_seconds"] == pytest.approx(900.0)
    assert cost["device_hours"] == pytest.approx(1.0)  # not 900 / 3600 = 0.25


def test_a_model_trained_here_is_charged_once_and_a_loaded_one_in_full():
    model = Path("/cache/target-model-resnet18-0123456789abcdef.pt")
    trained = SharedModel.of(model, {"seconds": 1800.0, "processes": 2}, trained_here=True)
    loaded = SharedModel.of(model, {"seconds": 1800.0, "processes": 2}, trained_here=False)
    # A run of 2,000 s on 4 processes that spent 1,800 s of it training the model on 2.
    first = selection_cost(2000.0, 4, [trained])
    assert first["own_seconds"] == pytest.approx(200.0)
    assert first["seconds"] == pytest.approx(2000.0)
    assert first["device_hours"] == pytest.approx(200 * 4 / 3600 + 1800 * 2 / 3600)
    assert first["shared"][0]["key"] == "target-model-resnet18-0123456789abcdef"
    # A run of 200 s that only loaded it is charged the same.
    second = selection_cost(200.0, 4, [loaded])
    assert second["seconds"] == pytest.approx(first["seconds"])
    assert second["device_hours"] == pytest.approx(first["device_hours"])


def test_a_model_of_unknown_cost_is_listed_not_counted():
    old = SharedModel.of(Path("/cache/domain-classifier-resnet18-x.pt"), None, trained_here=False)
    cost = selection_cost(10.0, 1, [old])
    assert cost["seconds"] == pytest.approx(10.0)
    assert cost["shared"][0]["seconds"] is None


def test_methods_sharing_the_target_model_are_both_charged_its_training(
        two_part_pool, stripes_target, tmp_path):
    cache = tmp_path / "cache"
    costs = {}
    for method in ("clustering-min", "active-learning"):  # the first trains, the second loads
        out = tmp_path / method
        select([str(two_part_pool)], str(stripes_target), out,
               quick(method=method, fraction=0.5, cache_dir=str(cache)))
        costs[method] = json.loads((out / "selection.json").read_text())
    (model_file,) = cache.glob("target-model-*.pt")
    recorded = torch.load(model_file, weights_only=True)["cost"]
    assert recorded["seconds"] > 0 and recorded["processes"] == 1

    first, second = costs["clustering-min"], costs["active-learning"]
    (first_model,), (second_model,) = first["cost"]["shared"], second["cost"]["shared"]
    assert first_model["key"] == second_model["key"] == model_file.stem
    assert first_model["trained_here"] and not second_model["trained_here"]
    assert first_model["seconds"] == second_model["seconds"] == recorded["seconds"]
    # Before, the second method's fit was charged ~0: it only loaded the file.
    assert second["timings"]["fit"] < recorded["seconds"]
    for info in (first, second):
        cost = info["cost"]
        assert cost["seconds"] >= recorded["seconds"]
        assert cost["seconds"] == pytest.approx(cost["own_seconds"] + recorded["seconds"], abs=2e-3)
        assert cost["device_hours"] == pytest.approx(
            device_hours(cost["own_seconds"], info["processes"])
            + device_hours(recorded["seconds"], 1), abs=1e-6)
    # The run that trained the model: its own time is its wall time less the training.
    assert first["cost"]["own_seconds"] == pytest.approx(
        first["timings"]["total"] - recorded["seconds"], abs=2e-3)


def test_domain_classifier_reused_from_the_cache_is_charged_its_training(
        two_part_pool, stripes_target, tmp_path):
    cache = tmp_path / "cache"
    runs = []
    for run in ("a", "b"):
        select([str(two_part_pool)], str(stripes_target), tmp_path / run,
               quick(method="domain-classifier", fraction=0.25, cache_dir=str(cache)))
        runs.append(json.loads((tmp_path / run / "selection.json").read_text())["cost"])
    (first,), (second,) = runs[0]["shared"], runs[1]["shared"]
    assert first["key"].startswith("domain-classifier-") and first["key"] == second["key"]
    assert first["trained_here"] and not second["trained_here"]
    assert runs[1]["seconds"] >= second["seconds"] > 0
