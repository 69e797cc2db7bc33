from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
import torchvision
import yaml
from conftest import kill_after, tiny_pretrain
from imagegen import make_image_folder

from condpretrain.data.sources import open_pool, write_index_csv
from condpretrain.errors import CondPretrainError
from condpretrain.models import resnet10
from condpretrain.train.moco import clamp_queue
from condpretrain.train.pretrain import pretrain


def _backbone(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "backbone.pt", weights_only=True)


def test_supervised_learns_and_writes_the_run_folder(pool4, tmp_path):
    out = tmp_path / "run"
    result = pretrain(str(pool4), out, tiny_pretrain(epochs=3, lr=0.01))
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [0, 1, 2]
    assert metrics[-1]["loss"] < metrics[0]["loss"] * 0.5  # a learnable task: loss falls
    assert {"loss", "lr", "accuracy", "images_per_s", "seconds"} <= set(metrics[0])
    cost = json.loads((out / "run.json").read_text())
    assert cost["status"] == "done" and cost["images"] == 3 * 48 and cost["device_count"] == 1
    assert cost["flops"] == pytest.approx(3 * 48 * 3 * cost["flops_per_image"])
    assert cost["device_hours"] > 0 and cost["device_kind"] == "cpu"
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["config"]["arch"] == "resnet10" and saved["classes"] == ["a", "b", "c", "d"]
    assert result.result["classes"] == 4 and result.cost["images"] == 144
    missing, unexpected = resnet10().load_state_dict(_backbone(out), strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and not unexpected


def test_backbone_loads_into_torchvision_resnet18(pool4, tmp_path):
    pretrain(str(pool4), tmp_path / "r18", tiny_pretrain(arch="resnet18", epochs=1))
    missing, unexpected = torchvision.models.resnet18().load_state_dict(
        _backbone(tmp_path / "r18"), strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and not unexpected


def test_subset_keeps_only_its_classes_and_pools_key_labels(pool4, tmp_path):
    other = make_image_folder(tmp_path / "other", {"a": "checker"}, per_class=12, size=16)
    pool = open_pool([f"one={pool4}", f"two={other}"])
    keep = [i for i, label in enumerate(pool.labels) if label == "a"]
    write_index_csv(tmp_path / "subset.csv", pool.take(keep))
    out = tmp_path / "run"
    pretrain([f"one={pool4}", f"two={other}"], out, tiny_pretrain(epochs=1),
             subset=tmp_path / "subset.csv")
    assert yaml.safe_load((out / "config.yaml").read_text())["classes"] == ["one/a", "two/a"]
    assert json.loads((out / "run.json").read_text())["images"] == 24


def test_subset_naming_a_file_outside_the_pool_is_one_line_error(pool4, tmp_path):
    index = open_pool(str(pool4)).take([0, 1])
    index.paths[1] = str(tmp_path / "elsewhere.png")
    write_index_csv(tmp_path / "subset.csv", index)
    with pytest.raises(CondPretrainError, match="elsewhere.png") as err:
        pretrain(str(pool4), tmp_path / "run", tiny_pretrain(), subset=tmp_path / "subset.csv")
    assert "\n" not in str(err.value)


def test_init_of_another_arch_is_one_line_error(pool4, tmp_path):
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pt")
    with pytest.raises(CondPretrainError, match="does not fit resnet10") as err:
        pretrain(str(pool4), tmp_path / "run", tiny_pretrain(init=str(tmp_path / "r18.pt")))
    assert "\n" not in str(err.value)


def test_unlabelled_pool_in_supervised_mode_is_an_error(tmp_path):
    flat = tmp_path / "flat"
    make_image_folder(tmp_path / "tmp", {"x": "noise"}, per_class=4, size=16)
    (tmp_path / "tmp" / "x").rename(flat)
    with pytest.raises(CondPretrainError, match="--mode moco"):
        pretrain(str(flat), tmp_path / "run", tiny_pretrain())


def test_existing_run_needs_resume(pool4, tmp_path):
    pretrain(str(pool4), tmp_path / "run", tiny_pretrain(epochs=1))
    with pytest.raises(CondPretrainError, match="--resume"):
        pretrain(str(pool4), tmp_path / "run", tiny_pretrain(epochs=1))
    again = pretrain(str(pool4), tmp_path / "run", tiny_pretrain(epochs=1), resume=True)
    assert again.result["epochs"] == 1  # a finished run is returned, not retrained


def test_cache_and_no_cache_train_identically(pool4, tmp_path):
    pretrain(str(pool4), tmp_path / "cached", tiny_pretrain(epochs=1))
    pretrain(str(pool4), tmp_path / "decoded", tiny_pretrain(epochs=1, cache=False))
    assert list((tmp_path / "cached" / "cache").glob("images-*.npy"))
    assert not (tmp_path / "decoded" / "cache").exists()
    a, b = _backbone(tmp_path / "cached"), _backbone(tmp_path / "decoded")
    assert all(torch.equal(a[k], b[k]) for k in a)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_moco_runs_clamps_its_queue_and_exports_the_query_encoder(pool4, tmp_path):
    out = tmp_path / "moco"
    records = _Records()  # the CLI tests may have turned propagation off: listen directly
    logging.getLogger("condpretrain").addHandler(records)
    try:
        result = pretrain(str(pool4), out, tiny_pretrain(mode="moco", epochs=2, moco_queue=1000,
                                                         batch_size=20))
    finally:
        logging.getLogger("condpretrain").removeHandler(records)
    assert any("clamped from 1000 to 40" in line for line in records.lines)  # <=48, x20
    cost = json.loads((out / "run.json").read_text())
    assert cost["moco_queue"] == 40 and cost["mode"] == "moco"
    assert cost["images"] == 2 * 40  # incomplete batches dropped
    assert result.result["final_loss"] > 0
    missing, unexpected = resnet10().load_state_dict(_backbone(out), strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and not unexpected


def test_clamp_queue_rules():
    assert clamp_queue(65536, 1000, 256) == 768
    assert clamp_queue(512, 100_000, 256) == 512
    with pytest.raises(CondPretrainError, match="--batch-size"):
        clamp_queue(65536, 100, 256)


@pytest.mark.parametrize("mode", ["supervised", "moco", "moco, colour on the device"])
def test_resume_after_a_mid_epoch_kill_equals_an_uninterrupted_run(pool4, tmp_path, monkeypatch,
                                                                   mode):
    # checkpoint after every batch; 2 batches per epoch, so the kill lands mid-epoch 2
    where = "device" if mode.endswith("device") else "workers"
    config = tiny_pretrain(mode=mode.split(",")[0], epochs=2, batch_size=24,
                           checkpoint_minutes=0, moco_augment_on=where)
    pretrain(str(pool4), tmp_path / "whole", config)
    kill_after(monkeypatch, 3)
    with pytest.raises(RuntimeError, match="injected kill"):
        pretrain(str(pool4), tmp_path / "killed", config)
    state = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)
    assert state["position"]["epoch"] == 1 and state["position"]["step"] == 1
    monkeypatch.undo()
    resumed = pretrain(str(pool4), tmp_path / "killed", config, resume=True)
    a, b = _backbone(tmp_path / "whole"), _backbone(tmp_path / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    whole = (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()
    again = (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["loss"] for x in whole] == pytest.approx(
        [json.loads(x)["loss"] for x in again])
    assert resumed.cost["sessions"] == 2 and resumed.cost["images"] == json.loads(
        (tmp_path / "whole" / "run.json").read_text())["images"]


def test_resume_with_other_options_is_refused(pool4, tmp_path, monkeypatch):
    kill_after(monkeypatch, 1)
    with pytest.raises(RuntimeError):
        pretrain(str(pool4), tmp_path / "run", tiny_pretrain(checkpoint_minutes=0))
    monkeypatch.undo()
    with pytest.raises(CondPretrainError, match="epochs was 2"):
        pretrain(str(pool4), tmp_path / "run", tiny_pretrain(epochs=3), resume=True)


def test_pretrain_reads_webdataset_shards(pool4, tmp_path):
    """A subset written back as shards is a pool of its own for pre-training."""
    from condpretrain.data.shards import write_shards

    pool = open_pool([str(pool4)])
    write_shards(pool.paths, pool.labels, tmp_path / "shards", per_shard=20, prefix="s")
    pattern = str(tmp_path / "shards" / "s-{000000..000002}.tar")
    result = pretrain(pattern, tmp_path / "run", tiny_pretrain(epochs=1))
    assert result.cost["images"] == len(pool) == 48
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["classes"] == sorted(
        set(pool.labels))
