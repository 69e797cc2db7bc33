"""``condpretrain run --launcher``: the grid in this process or as Slurm jobs."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
import yaml

from condpretrain.cli import main


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    """Only planned and submitted here, never run: the folders need not exist."""
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({
        "preset": "quick", "pool": ["pool"], "targets": {"t": "target"},
        "methods": ["random"], "budgets": [0.5], "resolutions": [16], "baselines": False,
        "slurm": {"partition": "gpu", "pretrain": {"gpus": 4}}}))
    return path


def fake_sbatch(folder: Path) -> None:
    """``sbatch`` answering as Slurm's does, and ``srun``, by which submitit finds Slurm."""
    folder.mkdir()
    for name, body in {"sbatch": 'echo "Submitted batch job 7"', "srun": "exit 0",
                       "squeue": "exit 0"}.items():
        script = folder / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_slurm_without_sbatch_is_one_line(experiment: Path, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine that is not a Slurm login node
    code = main(["run", str(experiment), "--out", str(tmp_path / "out"), "--launcher", "slurm"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("condpretrain run: error: --launcher slurm: sbatch is not on PATH")


def test_slurm_without_submitit_says_what_to_install(experiment: Path, tmp_path: Path,
                                                     monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if not installed
    code = main(["run", str(experiment), "--out", str(tmp_path / "out"), "--launcher", "slurm"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "pip install 'condpretrain[cluster]'" in err


def test_unknown_launcher_is_refused(experiment: Path, tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", str(experiment), "--out", str(tmp_path / "out"), "--launcher", "pbs"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--launcher" in err and "local" in err and "slurm" in err


def test_slurm_submits_and_says_where_the_ids_are(experiment: Path, tmp_path: Path,
                                                  monkeypatch, capsys):
    fake_sbatch(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "out"
    assert main(["run", str(experiment), "--out", str(out), "--launcher", "slurm"]) == 0
    printed = capsys.readouterr().out
    # select, pretrain, finetune, collect; the report waits for the jobs
    assert printed.startswith(f"4 job(s) submitted, ids in {out / 'slurm' / 'jobs.json'}")
    assert f"condpretrain report {out}" in printed and not (out / "report.md").exists()
    script = (out / "slurm" / "7_submission.sh").read_text()
    assert "#SBATCH --partition=gpu\n" in script
