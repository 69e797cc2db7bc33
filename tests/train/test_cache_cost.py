"""Building an image cache is part of a run's cost: counted in the totals and apart."""

from __future__ import annotations

import json
import time

import pytest
from conftest import tiny_finetune, tiny_pretrain

from condpretrain.data import cache
from condpretrain.train.finetune import finetune
from condpretrain.train.pretrain import pretrain
from condpretrain.train.run import CostMeter


def test_cost_meter_counts_the_cache_in_the_totals_and_apart():
    meter = CostMeter.start(None, device_count=4)
    meter.add_cache(90.0)
    state = meter.state()
    assert state["cache_seconds"] == 90.0 and state["cache_device_hours"] == pytest.approx(0.1)
    assert 90.0 <= state["wall_seconds"] < 95 and state["device_hours"] >= 0.1
    resumed = CostMeter.start(state, device_count=4)  # a later session reuses the cache
    assert resumed.state()["cache_seconds"] == 90.0 and resumed.state()["wall_seconds"] >= 90


def _slow_build(monkeypatch, seconds: float) -> None:
    """Make building the cache take at least ``seconds``, so the figure is unmistakable."""
    original = cache._write_records

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return original(*args, **kwargs)

    monkeypatch.setattr(cache, "_write_records", slow)


def _cost(run) -> dict:
    return json.loads((run / "run.json").read_text())


def test_pretrain_charges_the_cache_it_builds_and_not_one_it_reuses(pool4, tmp_path,
                                                                    monkeypatch):
    _slow_build(monkeypatch, 0.5)
    shared = str(tmp_path / "shared-cache")
    pretrain(str(pool4), tmp_path / "first", tiny_pretrain(epochs=1, cache_dir=shared))
    pretrain(str(pool4), tmp_path / "second", tiny_pretrain(epochs=1, cache_dir=shared))
    pretrain(str(pool4), tmp_path / "uncached", tiny_pretrain(epochs=1, cache=False))
    first, second = _cost(tmp_path / "first"), _cost(tmp_path / "second")
    assert first["cache_seconds"] >= 0.5
    assert first["wall_seconds"] >= first["cache_seconds"]
    assert first["cache_device_hours"] == pytest.approx(first["cache_seconds"] / 3600, abs=1e-6)
    assert second["cache_seconds"] == 0 and _cost(tmp_path / "uncached")["cache_seconds"] == 0


def test_finetune_charges_both_of_its_caches(target6, tmp_path, monkeypatch):
    _slow_build(monkeypatch, 0.4)  # the train split's cache and the test split's
    finetune(str(target6), tmp_path / "ft", tiny_finetune(epochs=1))
    assert _cost(tmp_path / "ft")["cache_seconds"] >= 0.8
