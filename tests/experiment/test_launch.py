"""Launchers: the grid's steps as submitit jobs.

The Slurm path is checked against stand-ins for ``sbatch``/``srun``/``squeue`` (what would
be submitted, with which dependencies); the whole path runs for real with submitit's
local executor, a killed and a preempted job included.
"""

from __future__ import annotations

import os
import pickle
import signal
import stat
import sys
from pathlib import Path

import pytest
import yaml
from expfiles import write_yaml
from fake_steps import FakePipeline

from condpretrain.errors import CondPretrainError
from condpretrain.experiment import Experiment, load_experiment, read_results, run
from condpretrain.experiment.launch import (
    INSTALL_HINT,
    JOBS_FILE,
    SlurmLauncher,
    StepJob,
    export_torch_environment,
    launch,
)
from condpretrain.experiment.steps import COLLECT

HERE = Path(__file__).parent


@pytest.fixture
def grid_file(tmp_path: Path, two_part_pool: Path, stripes_target: Path) -> Path:
    """One target, one method, one budget, both baselines: 3 cells, 6 steps + collect."""
    return write_yaml(tmp_path / "exp.yaml", {
        "name": "tiny", "preset": "quick", "pool": [str(two_part_pool)],
        "targets": {"warm": str(stripes_target)}, "methods": ["random"], "budgets": [0.25],
        "resolutions": [16], "seeds": [0],
        "slurm": {"partition": "gpu", "qos": "high", "sbatch": {"constraint": "volta32gb"},
                  "pretrain": {"gpus": 8, "cpus": 10, "time": 4320, "mem": 480},
                  "finetune": {"gpus": 1, "time": 600}},
    })


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch) -> Path:
    """``sbatch`` numbering jobs from 101, ``srun`` (how submitit detects Slurm), and
    ``squeue`` listing the ids in ``queued.txt``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "sbatch": 'n=$(cat "$0.count" 2>/dev/null || echo 100); n=$((n+1)); '
                  'echo $n > "$0.count"; echo "Submitted batch job $n"',
        "srun": "exit 0",
        "squeue": f'cat "{bin_dir}/queued.txt" 2>/dev/null; exit 0',
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def sbatch_file(out: Path, job_id: str) -> str:
    return (out / "slurm" / f"{job_id}_submission.sh").read_text()


def test_slurm_submits_every_step_once_after_what_it_needs(grid_file: Path, tmp_path: Path,
                                                           fake_slurm: Path):
    out = tmp_path / "out"
    submitted = launch(grid_file, out, "slurm")
    assert not submitted.complete  # the jobs have not run: nothing was computed here
    jobs = submitted.jobs
    assert len(jobs) == 7 and len(set(jobs.values())) == 7
    assert yaml.safe_load((out / "slurm" / JOBS_FILE).read_text()) == jobs
    assert not (out / "results.csv").exists()
    entire = jobs["pretrain:pretrain/supervised-16/entire-pool/seed0"]
    subset = jobs["pretrain:pretrain/supervised-16/warm/random-b25/seed0"]
    select = jobs["select:select/warm/random/seed0/scores"]
    script = sbatch_file(out, subset)
    for line in ("--partition=gpu", "--qos=high", "--constraint=volta32gb",
                 f"--dependency=afterok:{select}", "--kill-on-invalid-dep=yes",
                 "--gpus-per-node=8", "--ntasks-per-node=8", "--cpus-per-task=10",
                 "--time=4320", "--mem=480GB"):
        assert f"#SBATCH {line}\n" in script, line
    assert "--dependency" not in sbatch_file(out, entire)  # waits for nothing
    finetune = jobs["finetune:finetune/warm/supervised-16/entire-pool/seed0"]
    assert f"--dependency=afterok:{entire}\n" in sbatch_file(out, finetune)
    assert "--time=600\n" in sbatch_file(out, finetune)
    finetunes = sorted(job for step, job in jobs.items() if step.startswith("finetune:"))
    collect = sbatch_file(out, jobs[COLLECT])
    assert f"--dependency=afterok:{':'.join(finetunes)}\n" in collect
    assert "--gpus-per-node=0\n" in collect
    # a job carries the folder and its step's id, nothing else
    with open(out / "slurm" / f"{subset}_submitted.pkl", "rb") as handle:
        job = pickle.load(handle).function
    assert type(job) is StepJob
    assert vars(job) == {"out": str(out), "step": "pretrain:pretrain/supervised-16/warm/"
                                                  "random-b25/seed0"}


def test_a_second_submission_waits_for_queued_jobs(grid_file: Path, tmp_path: Path,
                                                   fake_slurm: Path):
    out = tmp_path / "out"
    first = launch(grid_file, out, "slurm").jobs
    (fake_slurm / "queued.txt").write_text(f"{first[COLLECT]}\n999\n")
    with pytest.raises(CondPretrainError, match=f"jobs {first[COLLECT]} of an earlier") as info:
        launch(grid_file, out, "slurm")
    assert "\n" not in str(info.value)
    (fake_slurm / "queued.txt").write_text("")  # they failed or were cancelled: again
    again = launch(grid_file, out, "slurm").jobs
    assert set(again) == set(first) and not set(again.values()) & set(first.values())


def test_finished_grid_submits_nothing(grid_file: Path, tmp_path: Path, fake_slurm: Path):
    out = tmp_path / "out"
    run(grid_file, out, FakePipeline().steps())
    done = launch(grid_file, out, "slurm")
    assert done.complete and done.jobs == {} and done.jobs_file is None
    assert not (fake_slurm / "sbatch.count").exists()


def test_without_submitit_or_sbatch_one_line(grid_file: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    with pytest.raises(CondPretrainError, match="sbatch is not on PATH"):
        launch(grid_file, tmp_path / "out", "slurm")
    monkeypatch.setitem(sys.modules, "submitit", None)  # not installed
    with pytest.raises(CondPretrainError) as info:
        launch(grid_file, tmp_path / "out", "slurm")
    assert INSTALL_HINT in str(info.value) and "\n" not in str(info.value)


def test_several_tasks_export_what_torchrun_would(monkeypatch):
    for name, value in {"SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_JOB_ID": "4242",
                        "SUBMITIT_LOCAL_NTASKS": "2", "SUBMITIT_LOCAL_JOB_NUM_NODES": "1",
                        "SUBMITIT_LOCAL_NODEID": "0", "SUBMITIT_LOCAL_GLOBALID": "1",
                        "SUBMITIT_LOCAL_LOCALID": "1", "CUDA_VISIBLE_DEVICES": "4,5"}.items():
        monkeypatch.setenv(name, value)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    export_torch_environment()
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == \
        ("1", "2", "1")
    assert os.environ["MASTER_ADDR"] and int(os.environ["MASTER_PORT"]) > 0
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "4,5"  # dist.py picks cuda:LOCAL_RANK
    monkeypatch.setenv("SUBMITIT_LOCAL_NTASKS", "1")  # one process: nothing distributed
    export_torch_environment()
    assert "RANK" not in os.environ and "WORLD_SIZE" not in os.environ


class FakeStepJob(StepJob):
    """A job whose steps are the fake pipeline's (in this process)."""

    def experiment(self, config, out):
        return Experiment(config, out, FakePipeline().steps())


def test_a_job_runs_its_step_once_its_needs_are_done(grid_file: Path, tmp_path: Path):
    out = tmp_path / "out"
    Experiment(load_experiment(grid_file), out).prepare()  # what the launcher leaves
    pretrain = "pretrain:pretrain/supervised-16/warm/random-b25/seed0"
    with pytest.raises(CondPretrainError, match="select/warm/random/seed0/scores is not "
                                                "finished"):
        FakeStepJob(str(out), pretrain)()
    assert FakeStepJob(str(out), "select:select/warm/random/seed0/scores")() == \
        "select:select/warm/random/seed0/scores"
    assert (out / "select/warm/random/seed0/b25/subset.csv").is_file()
    FakeStepJob(str(out), pretrain)()
    assert (out / "pretrain/supervised-16/warm/random-b25/seed0/backbone.pt").is_file()
    with pytest.raises(CondPretrainError, match="no step 'pretrain:elsewhere'"):
        FakeStepJob(str(out), "pretrain:elsewhere")()
    # preempted: submitit requeues what checkpoint() gives, the same step
    again = StepJob(str(out), pretrain).checkpoint()
    assert type(again.function) is StepJob and vars(again.function) == \
        {"out": str(out), "step": pretrain}


# --------------------------------------------------------------------------- for real


def signal_after_steps(steps: int, signum: int) -> None:
    """This process gets ``signum`` in its training loop's step ``steps + 1``."""
    from condpretrain.train.loop import Trainer

    original = Trainer.train_step
    calls = {"n": 0}

    def step(self, batch):
        calls["n"] += 1
        if calls["n"] > steps:
            os.kill(os.getpid(), signum)
        return original(self, batch)

    Trainer.train_step = step


class InterruptedOnce(StepJob):
    """The first attempt at each training step stops after two optimizer steps: the
    pre-training killed outright, the fine-tuning preempted (SIGUSR2: submitit calls
    checkpoint() and requeues the job)."""

    SIGNALS = {"pretrain": signal.SIGKILL, "finetune": signal.SIGUSR2}

    def experiment(self, config, out):
        kind = self.step.partition(":")[0]
        marker = out / f"interrupted-{kind}"
        if kind in self.SIGNALS and not marker.exists():
            marker.touch()
            signal_after_steps(2, self.SIGNALS[kind])
        return super().experiment(config, out)


def job_log(out: Path, step: str) -> str:
    jobs = yaml.safe_load((out / "slurm" / JOBS_FILE).read_text())
    return (out / "slurm" / f"{jobs[step]}_0_log.err").read_text()


COMPARED = ("target", "mode", "resolution", "budget", "method", "seed", "selected",
            "pool_size", "pretrain_images", "pretrain_flops", "arch", "top1", "top5",
            "best_test_top1", "select_dir", "pretrain_dir", "finetune_dir")


def test_local_executor_gives_the_local_results_through_a_kill_and_a_preemption(
        tmp_path: Path, two_part_pool: Path, stripes_target: Path, monkeypatch):
    # the jobs are other processes: they import this module to unpickle InterruptedOnce
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(HERE), str(HERE.parent), *filter(None, [os.environ.get("PYTHONPATH")])]))
    # submitit waits 15 s for a dead job's result file to reach a network file system;
    # here the file system is local
    from submitit.local.local import LocalJob

    monkeypatch.setattr(LocalJob, "_results_timeout_s", 1)
    tiny = {"deterministic": True, "checkpoint_minutes": 0, "epochs": 2}
    path = write_yaml(tmp_path / "exp.yaml", {
        "preset": "quick", "pool": [str(two_part_pool)], "targets": {"warm": str(stripes_target)},
        "methods": ["random"], "budgets": [0.25], "resolutions": [16], "baselines": False,
        "select": {"filter_resolution": 16, "deterministic": True},
        "pretrain": {**tiny, "batch_size": 8},  # 24 images: 3 steps an epoch
        "finetune": {**tiny, "batch_size": 16, "resolution": 16},  # 32 images: 2 steps
        "slurm": {kind: {"gpus": 0, "cpus": 1, "time": 10}
                  for kind in ("select", "pretrain", "finetune")},
    })
    config = load_experiment(path)
    expected = read_results(launch(config, tmp_path / "local").results_csv)

    out = tmp_path / "cluster"
    launcher = SlurmLauncher(cluster="local", job=InterruptedOnce)
    with pytest.raises(CondPretrainError) as info:  # the pre-training job was killed
        launcher.launch(config, out)
    assert str(info.value).startswith("step pretrain:pretrain/supervised-16/warm/random-b25")
    assert "\n" not in str(info.value) and not (out / "results.csv").exists()
    assert (out / "pretrain/supervised-16/warm/random-b25/seed0/checkpoint.pt").is_file()

    again = launcher.launch(config, out)  # what is unfinished: pretrain, finetune, collect
    assert again.complete and len(again.jobs) == 3
    pretrain_log = job_log(out, "pretrain:pretrain/supervised-16/warm/random-b25/seed0")
    assert "resuming" in pretrain_log and "at epoch 1, batch 2" in pretrain_log
    finetune_log = job_log(out, "finetune:finetune/warm/supervised-16/random-b25/seed0")
    assert "resuming" in finetune_log and "at epoch 2, batch 0" in finetune_log  # requeued
    rows = read_results(out / "results.csv")
    assert [{k: r[k] for k in COMPARED} for r in rows] == \
        [{k: r[k] for k in COMPARED} for r in expected]
