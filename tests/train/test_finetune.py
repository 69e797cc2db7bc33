from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_finetune, tiny_pretrain

from condpretrain.cli import main
from condpretrain.errors import CondPretrainError
from condpretrain.export import load_detectron2
from condpretrain.train.finetune import finetune
from condpretrain.train.pretrain import pretrain


def test_finetune_learns_reports_topk_and_keeps_best_and_last(target6, tmp_path):
    out = tmp_path / "ft"
    result = finetune(str(target6), out, tiny_finetune(epochs=3, lr=0.01)).result
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 3 and all("top1" in m and "top5" in m for m in metrics)
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    assert result["top1"] > 100 / 6  # above chance on a learnable target
    assert result["best_top1"] == max(m["top1"] for m in metrics)
    assert result["backbone_kind"] == "random" and result["classes"] == 6
    for name in ("model_best.pt", "model_last.pt", "backbone.pt", "result.json", "run.json",
                 "config.yaml"):
        assert (out / name).is_file(), name
    last = torch.load(out / "model_last.pt", weights_only=True)
    assert last["fc.weight"].shape == (6, 512)


def test_the_best_epoch_is_named_for_the_test_split_it_was_chosen_on(target6, tmp_path):
    out = tmp_path / "ft"
    result = finetune(str(target6), out, tiny_finetune(epochs=3, lr=0.01)).result
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    best = max(metrics, key=lambda m: m["top1"])
    # the headline is the last epoch; the test-selected best is named as such
    assert (result["top1"], result["top5"]) == (metrics[-1]["top1"], metrics[-1]["top5"])
    assert result["best_test_top1"] == best["top1"] == result["best_top1"]
    assert result["best_test_epoch"] == best["epoch"] and "best_epoch" not in result
    assert "last epoch" in result["note"]
    assert (out / "model_best_on_test.pt").is_file()
    # the old name stays readable, the same file (a hard link) rather than a second copy
    assert torch.equal(torch.load(out / "model_best.pt", weights_only=True)["fc.weight"],
                       torch.load(out / "model_best_on_test.pt", weights_only=True)["fc.weight"])
    assert not list(out.glob(".model_best*"))  # no temporary link left behind


def test_moco_backbone_gets_the_moco_recipe(pool4, target6, tmp_path):
    pretrain(str(pool4), tmp_path / "moco", tiny_pretrain(mode="moco", epochs=1, batch_size=24))
    config = tiny_finetune(epochs=1, lr=None, init=str(tmp_path / "moco" / "backbone.pt"))
    result = finetune(str(target6), tmp_path / "ft", config).result
    assert result["backbone_kind"] == "moco" and result["lr"] == 0.001


def test_finetune_bad_init_is_one_line_error(target6, tmp_path):
    with pytest.raises(CondPretrainError, match="no such checkpoint"):
        finetune(str(target6), tmp_path / "ft", tiny_finetune(init=str(tmp_path / "nope.pt")))


def test_cli_pretrain_finetune_export(pool4, target6, tmp_path, capsys):
    common = ["--preset", "quick", "--device", "cpu", "--resolution", "16", "--epochs", "1",
              "--batch-size", "12"]
    assert main(["pretrain", "--source", str(pool4), "--out", str(tmp_path / "pre"), *common]) == 0
    assert main(["finetune", "--target", str(target6), "--init",
                 str(tmp_path / "pre" / "backbone.pt"), "--out", str(tmp_path / "ft"),
                 *common]) == 0
    assert main(["export", "--backbone", str(tmp_path / "pre"), "--out",
                 str(tmp_path / "d2.pkl")]) == 0
    assert "stem.conv1.weight" in load_detectron2(tmp_path / "d2.pkl")
    capsys.readouterr()
    assert main(["finetune", "--target", str(tmp_path / "missing"), "--out",
                 str(tmp_path / "x"), *common]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing" in err


def test_ddp_two_gloo_processes(pool4, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "condpretrain", "pretrain", "--source", str(pool4), "--out", str(tmp_path / "ddp"),
           "--preset", "quick", "--device", "cpu", "--resolution", "16", "--epochs", "2",
           "--batch-size", "6", "--mode", "moco"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cost = json.loads((tmp_path / "ddp" / "run.json").read_text())
    assert cost["device_count"] == 2 and cost["status"] == "done"
    assert cost["images"] == 2 * 48  # each epoch covers the pool once across both ranks
    assert cost["moco_queue"] == 48  # clamped to a multiple of the global batch (12)
    assert (tmp_path / "ddp" / "backbone.pt").is_file()


def test_eval_every_tests_every_nth_epoch_and_always_the_last(target6, tmp_path):
    out = tmp_path / "ft"
    result = finetune(str(target6), out, tiny_finetune(epochs=5, lr=0.01, eval_every=2)).result
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [("top1" in m) for m in metrics] == [False, True, False, True, True]
    assert result["top1"] == metrics[-1]["top1"] is not None


def test_every_evaluation_reads_one_loader_whose_workers_stay(target6, tmp_path, monkeypatch):
    from condpretrain.train import finetune as finetune_module

    loaders, real = [], finetune_module.test_scores

    def spy(model, loader, *args):
        loaders.append(loader)
        return real(model, loader, *args)

    monkeypatch.setattr(finetune_module, "test_scores", spy)
    plain = finetune(str(target6), tmp_path / "plain", tiny_finetune(epochs=3))
    loaders.clear()
    result = finetune(str(target6), tmp_path / "workers",
                      tiny_finetune(epochs=3, workers=1, eval_every=1))
    assert len(loaders) == 3 and all(loader is loaders[0] for loader in loaders)
    assert loaders[0].persistent_workers  # its worker lives from the first pass to the last
    assert result.result["top1"] == plain.result["top1"]  # the same passes, other processes
