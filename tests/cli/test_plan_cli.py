"""`condpretrain plan` end to end, as a user runs it (a subprocess, python -m)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from vocgen import make_voc

from condpretrain.cli import main
from condpretrain.experiment.results import KEY_COLUMNS

QUICK = ["--preset", "quick", "--device", "cpu", "--steps", "2", "--warmup-steps", "1",
         "--score-batches", "2"]


def cli(*args: str) -> subprocess.CompletedProcess:
    # One compute thread: two threads on a two-core machine shared with other jobs spend
    # more time waiting for each other than computing.
    return subprocess.run([sys.executable, "-m", "condpretrain", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_plan_end_to_end(two_part_pool: Path, stripes_target: Path, tmp_path: Path):
    out = tmp_path / "exp"
    result = cli("plan", "--source", str(two_part_pool), "--target", f"cars={stripes_target}",
                 "--methods", "random,domain-classifier", "--budgets", "25%",
                 "--resolutions", "16", "--hours", "100", "--out", str(out), *QUICK)
    assert result.returncode == 0, result.stderr
    plan = json.loads((out / "plan.json").read_text())
    # the runner's cells, in its order: the baselines, then the budget's methods
    assert [c["method"] for c in plan["cells"]] == ["random-init", "entire-pool", "random",
                                                    "domain-classifier"]
    assert all(set(KEY_COLUMNS) <= set(c) and c["target"] == "cars" for c in plan["cells"])
    random_init, entire, random, classifier = plan["cells"]
    assert random_init["select_device_hours"] == random_init["pretrain_device_hours"] == 0
    assert entire["select_device_hours"] == 0 < entire["pretrain_device_hours"]
    # the domain classifier trains a model and scores with it: more than random's hash
    assert classifier["select_device_hours"] > random["select_device_hours"] > 0
    # the entire pool (96 images) costs more to pre-train on than a quarter of it
    assert entire["pretrain_device_hours"] > random["pretrain_device_hours"] > 0
    assert [c["fits"] for c in plan["cells"]] == [True] * 4
    assert plan["cells"][-1]["cumulative_device_hours"] == \
        pytest.approx(plan["totals"]["once"]["total"])
    assert plan["sizes"] == {"pool": 96, "targets": {"cars": {"train": 32, "test": 16}}}
    assert plan["device"] == "cpu" and plan["preset"] == "quick"
    assert set(plan["calibration"]["rates"]["pretrain"]) == {"supervised-16"}
    assert "domain-classifier-resnet10" in \
        plan["calibration"]["rates"]["targets"]["cars"]["selection"]["models"]
    assert sorted(p.name for p in out.iterdir()) == ["plan.json"]  # scratch removed
    assert "4 of 4 cells fit in 100 device-hours" in result.stdout
    assert "cars supervised 16px 25% domain-classifier seed 0" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--hours", "-1"], "--hours must be positive, got -1.0"),
    (["--hours", "soon"], "--hours: expected a number, got 'soon'"),
    (["--pretrain", "{epochs: 0}"], "pretrain.epochs must be at least 1, got 0"),
    (["--select", "{method: random}"], "select.method: set per cell by the experiment grid"),
    (["--target", "/no/such/target"], "--target: no such file or folder: /no/such/target"),
])
def test_bad_input_is_one_line(args, message, two_part_pool: Path, stripes_target: Path,
                               tmp_path: Path, capsys):
    common = ["--source", str(two_part_pool), "--target", str(stripes_target),
              "--out", str(tmp_path / "o"), *QUICK]
    assert main(["plan", *common, *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("condpretrain plan: error: ")
    assert message in err
    assert not (tmp_path / "o" / "plan.json").exists()


def test_the_target_is_required(two_part_pool: Path, tmp_path: Path, capsys):
    assert main(["plan", "--source", str(two_part_pool), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == ("condpretrain plan: error: --target: give the target "
                                       "dataset\n")


def test_a_detection_target_is_planned(two_part_pool: Path, tmp_path: Path):
    voc = make_voc(tmp_path / "VOC2007", train=8, test=4, size=48)
    out = tmp_path / "exp"
    result = cli("plan", "--source", str(two_part_pool), "--target", f"voc07={voc}",
                 "--task", "detect", "--detect", "{iterations: 6}", "--test-images", "2",
                 "--methods", "random", "--budgets", "25%", "--resolutions", "16",
                 "--baselines", "entire-pool", "--out", str(out), *QUICK)
    assert result.returncode == 0, result.stderr
    plan = json.loads((out / "plan.json").read_text())
    detect = [job for job in plan["jobs"] if job["stage"] == "finetune"]
    # one detection run per cell, in the runner's folders, with the real run's work
    assert [job["key"].split("/")[:2] for job in detect] == [["detect", "voc07"]] * 2
    assert all(job["iterations"] == 6 and job["test_images"] == 4 for job in detect)
    assert all(c["finetune_device_hours"] > 0 for c in plan["cells"])
    assert plan["calibration"]["runs"]["targets"]["voc07"]["finetune"]["supervised"][
        "test_images"] == 2
    assert " detect " in result.stdout.splitlines()[1]  # the column's title


def test_a_method_needing_labels_is_refused_for_a_voc_target(two_part_pool: Path,
                                                              tmp_path: Path, capsys):
    voc = make_voc(tmp_path / "VOC2007", train=4, test=2, size=32)
    assert main(["plan", "--source", str(two_part_pool), "--target", f"voc07={voc}",
                 "--task", "detect", "--methods", "clustering-min", "--out",
                 str(tmp_path / "o"), *QUICK]) == 2
    last = capsys.readouterr().err.splitlines()[-1]  # after the lines listing the target
    assert last.startswith("condpretrain plan: error: targets.voc07: ")
    assert "clustering-min need its labels" in last
    assert not (tmp_path / "o").exists()


def write_experiment(tmp_path: Path, pool: Path, targets: dict, **sections) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({
        "pool": str(pool), "targets": targets, "preset": "quick", "methods": ["random"],
        "budgets": [0.25], "resolutions": [16], "baselines": ["entire-pool"],
        "select": {"device": "cpu"}, "pretrain": {"device": "cpu"},
        "finetune": {"device": "cpu"}, **sections}))
    return path


def test_an_experiment_file_is_planned_with_every_target(two_part_pool: Path,
                                                        stripes_target: Path, tmp_path: Path,
                                                        capsys):
    voc = make_voc(tmp_path / "VOC2007", train=6, test=2, size=48)
    experiment = write_experiment(tmp_path, two_part_pool, {
        "cars": str(stripes_target), "voc07": {"path": str(voc), "task": "detect"}},
        detect={"iterations": 4, "device": "cpu"})
    out = tmp_path / "out"
    calibration = tmp_path / "calibration.yaml"  # the calibration's options: a file, flags
    calibration.write_text("steps: 2\nwarmup_steps: 1\n")
    assert main(["plan", str(experiment), "--out", str(out), "--config", str(calibration),
                 "--score-batches", "2", "--test-images", "2"]) == 0
    plan = json.loads((out / "plan.json").read_text())
    assert plan["config"]["steps"] == 2 and plan["config"]["score_batches"] == 2
    # the runner's cells of both targets, in its order, from the file (preset included)
    assert [(c["target"], c["method"]) for c in plan["cells"]] == [
        ("cars", "entire-pool"), ("cars", "random"), ("voc07", "entire-pool"),
        ("voc07", "random")]
    assert plan["experiment"] == str(experiment) and plan["preset"] == "quick"
    assert plan["sizes"]["targets"] == {"cars": {"train": 32, "test": 16},
                                        "voc07": {"train": 6, "test": 2}}
    rates = plan["calibration"]["rates"]
    assert set(rates["targets"]) == {"cars", "voc07"} and "supervised-16" in rates["pretrain"]
    assert set(rates["targets"]["cars"]["finetune"]) == {"supervised"}
    assert set(rates["targets"]["voc07"]["tasks"]) == {"supervised"}
    # one entire-pool pre-training serves both targets: one job, counted once
    entire = {tuple(c["jobs"]["pretrain"]) for c in plan["cells"] if c["method"] == "entire-pool"}
    assert len(entire) == 1
    trained = [job["key"].split("/")[0] for job in plan["jobs"] if job["stage"] == "finetune"]
    assert sorted(trained) == ["detect", "detect", "finetune", "finetune"]
    assert "fine-tune/detect" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--methods", "random"], "--methods: {file} sets the grid (pool, targets, methods...)"),
    (["--source", "pool"], "--source: {file} sets the grid"),
    (["--preset", "paper"], "--preset: {file} runs the quick preset; a plan calibrates it"),
    (["--steps", "0"], "--steps must be at least 2, got 0"),
    (["--config", "{config}"], "--config: {config} sets budgets, which {file} sets"),
])
def test_an_experiment_files_grid_is_its_own(args, message, two_part_pool: Path,
                                             stripes_target: Path, tmp_path: Path, capsys):
    experiment = write_experiment(tmp_path, two_part_pool, {"cars": str(stripes_target)})
    config = tmp_path / "plan.yaml"  # calibration options, and a grid key
    config.write_text("steps: 4\nbudgets: [0.5]\n")
    args = [arg.format(config=config) for arg in args]
    assert main(["plan", str(experiment), "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.format(file=experiment, config=config) in err
    assert not (tmp_path / "o").exists()


def test_a_mixed_target_is_planned_as_run_runs_it(two_part_pool: Path,
                                                  stripes_target: Path, tmp_path: Path):
    experiment = write_experiment(tmp_path, two_part_pool, {
        "a": str(stripes_target), "b": str(stripes_target),
        "both": {"mix": {"a": 0.5, "b": 0.5}}}, baselines=[])
    out = tmp_path / "out"
    assert main(["plan", str(experiment), "--out", str(out), "--steps", "2",
                 "--warmup-steps", "1", "--score-batches", "2"]) == 0
    plan = json.loads((out / "plan.json").read_text())
    mixed = [c for c in plan["cells"] if c["subset_for"] == "both"]
    assert [c["target"] for c in mixed] == ["a", "b"]  # a row per part, one subset
    first, second = mixed
    # one pre-training on the merged subset serves both parts' rows
    assert first["jobs"]["pretrain"] == second["jobs"]["pretrain"]
    assert first["jobs"]["pretrain"][0].startswith("pretrain/supervised-16/both/")
    # each row: both parts' scorings (those of the parts' own cells) and the merge
    own = {c["target"]: c["jobs"]["select"][0] for c in plan["cells"] if not c["subset_for"]}
    assert set(own.values()) <= set(first["jobs"]["select"])
    assert first["jobs"]["select"][-1] == "select/both/random/seed0/b25"
    assert first["jobs"]["finetune"] != second["jobs"]["finetune"]  # trained on each part
    assert set(plan["sizes"]["targets"]) == {"a", "b"}  # a mix has no folder of its own
