"""One run per output folder (a lock), and output folders checked before any work."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from condpretrain import runlock
from condpretrain.cli import main
from condpretrain.config import FinetuneConfig, PretrainConfig, SelectConfig, build_config
from condpretrain.demo import DemoConfig, demo
from condpretrain.downstream import DOWNSTREAM_TASKS
from condpretrain.errors import CondPretrainError
from condpretrain.experiment import parse_experiment, run
from condpretrain.export import export_backbone
from condpretrain.selection import reselect, select
from condpretrain.train.finetune import finetune
from condpretrain.train.pretrain import pretrain

HOLDER = """
import sys
from condpretrain.runlock import hold
with hold(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def held(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen]]:
    """A folder that another process holds, until the test ends (or kills it)."""
    folder = tmp_path / "busy"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield folder, proc
    if proc.poll() is None:
        proc.stdin.close()
        proc.wait(timeout=30)


def quick_select(**overrides) -> SelectConfig:
    return build_config(SelectConfig, "quick", **{"method": "random", "count": 5,
                                                 "device": "cpu", **overrides})


def test_a_second_select_is_refused_in_one_line_then_runs_once_free(
        held, two_part_pool, stripes_target, capsys):
    folder, proc = held
    argv = ["select", "--source", str(two_part_pool), "--target", str(stripes_target),
            "--method", "random", "--count", "5", "--preset", "quick", "--device", "cpu",
            "--out", str(folder)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"--out {folder} is in use by another run" in err
    assert f"pid {proc.pid} on " in err  # names the holder
    proc.stdin.close()
    proc.wait(timeout=30)
    assert main(argv) == 0  # the holder is gone: the folder works again
    assert (folder / "subset.csv").is_file()


def test_a_killed_holder_leaves_no_stale_lock(held, two_part_pool, stripes_target):
    folder, proc = held
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert (folder / runlock.LOCK_FILE).is_file()  # the file stays; the lock went with it
    select([str(two_part_pool)], str(stripes_target), folder, quick_select())


def test_every_command_refuses_a_held_folder_before_any_work(
        held, two_part_pool, stripes_target, tmp_path):
    folder, proc = held
    busy = f"is in use by another run \\(pid {proc.pid}"
    with pytest.raises(CondPretrainError, match=busy):
        select([str(two_part_pool)], str(stripes_target), folder, quick_select())
    with pytest.raises(CondPretrainError, match=busy):
        pretrain([str(two_part_pool)], folder, build_config(PretrainConfig, "quick",
                                                            device="cpu"))
    with pytest.raises(CondPretrainError, match=busy):
        finetune(str(stripes_target), folder, build_config(FinetuneConfig, "quick",
                                                           device="cpu"))
    for name in DOWNSTREAM_TASKS.names():
        task = DOWNSTREAM_TASKS[name]
        with pytest.raises(CondPretrainError, match=busy):
            task(tmp_path / "VOC2007", task.config_class(device="cpu")).run(folder)
    experiment = parse_experiment({"pool": [str(two_part_pool)],
                                   "targets": {"t": str(stripes_target)},
                                   "methods": ["random"], "budgets": [0.5]}, where="test")
    with pytest.raises(CondPretrainError, match=busy):
        run(experiment, folder)
    with pytest.raises(CondPretrainError, match=busy):
        demo(folder, DemoConfig())
    assert sorted(p.name for p in folder.iterdir()) == [runlock.LOCK_FILE]  # nothing written


def test_reselect_refuses_a_held_folder(held, two_part_pool, stripes_target, tmp_path):
    folder, proc = held
    select([str(two_part_pool)], str(stripes_target), tmp_path / "scores", quick_select())
    with pytest.raises(CondPretrainError, match=f"pid {proc.pid}"):
        reselect(tmp_path / "scores", folder, count=3)


def test_the_same_thread_nests_another_is_refused(tmp_path):
    with runlock.hold(tmp_path), runlock.hold(tmp_path / "."):  # demo -> its grid
        errors = []

        def other():
            try:
                with runlock.hold(tmp_path):
                    pass
            except CondPretrainError as exc:
                errors.append(str(exc))

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert errors and "in use by another run of this process" in errors[0]
    with runlock.hold(tmp_path):  # released by the outer block
        pass


def test_torchrun_ranks_all_stop_when_the_folder_is_held(held, two_part_pool, stripes_target):
    folder, _ = held
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
               "2", "-m", "condpretrain", "select", "--source", str(two_part_pool), "--target",
               str(stripes_target), "--method", "random", "--count", "5", "--preset", "quick",
               "--device", "cpu", "--out", str(folder)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode != 0
    refusals = [line for line in result.stderr.splitlines() if "is in use by another run" in line]
    assert len(refusals) == 2  # both ranks said it, neither waited for the other


# -- output folders that cannot take the run's files ------------------------------------


def test_a_file_as_out_is_one_line(tmp_path, two_part_pool, stripes_target, capsys):
    file = tmp_path / "taken.txt"
    file.write_text("mine")
    assert main(["select", "--source", str(two_part_pool), "--target", str(stripes_target),
                 "--method", "random", "--count", "5", "--preset", "quick", "--device", "cpu",
                 "--out", str(file)]) == 2
    assert capsys.readouterr().err.strip() == \
        f"condpretrain select: error: --out {file} is a file, not a folder"
    with pytest.raises(CondPretrainError, match="is a file, not a folder"):
        pretrain([str(two_part_pool)], file, build_config(PretrainConfig, "quick", device="cpu"))
    with pytest.raises(CondPretrainError, match="cannot create the folder"):
        finetune(str(stripes_target), file / "run", build_config(FinetuneConfig, "quick",
                                                                 device="cpu"))
    assert file.read_text() == "mine"


def refuse_writes_in(folder: Path, code: int, monkeypatch) -> None:
    """Simulate a read-only or full folder (tests may run as root, whom chmod does not stop)."""
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):  # noqa: A002
        if dir is not None and Path(dir).resolve() == folder.resolve():
            raise OSError(code, os.strerror(code), str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


@pytest.mark.parametrize("code,reason", [(errno.EROFS, "Read-only file system"),
                                         (errno.EACCES, "Permission denied"),
                                         (errno.ENOSPC, "No space left on device")])
def test_an_unwritable_out_fails_before_any_work(tmp_path, two_part_pool, stripes_target,
                                                 monkeypatch, code, reason):
    out = tmp_path / "out"
    out.mkdir()
    refuse_writes_in(out, code, monkeypatch)

    def no_work(*args, **kwargs):
        raise AssertionError("the run started before checking --out")

    monkeypatch.setattr("condpretrain.selection.create_scorer", no_work)
    monkeypatch.setattr("condpretrain.selection.open_pool", no_work)
    with pytest.raises(CondPretrainError, match=f"--out {out} is not writable \\({reason}\\)"):
        select([str(two_part_pool)], str(stripes_target), out, quick_select())


def test_a_full_disk_at_the_start_is_caught_by_the_probe(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CondPretrainError, match="not writable \\(No space left on device\\)"):
        runlock.check_writable(tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())  # the probe is gone


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0500 folder anyway; "
                    "test_an_unwritable_out_fails_before_any_work simulates it")
def test_a_read_only_out_for_real(tmp_path, two_part_pool, stripes_target):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        with pytest.raises(CondPretrainError, match="is not writable"):
            select([str(two_part_pool)], str(stripes_target), out, quick_select())
    finally:
        out.chmod(0o700)


def test_a_full_disk_while_writing_an_output_is_one_line(tmp_path, two_part_pool,
                                                         stripes_target, monkeypatch, capsys):
    import numpy as np

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "save", no_space)  # chunk scores: the run's first output
    code = main(["select", "--source", str(two_part_pool), "--target", str(stripes_target),
                 "--method", "random", "--count", "5", "--preset", "quick", "--device", "cpu",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err.startswith("condpretrain select: error: cannot write ")
    assert err.endswith(".npy: No space left on device")


def test_export_to_an_existing_folder_is_one_line(tmp_path, capsys):
    from condpretrain.models import build_resnet, save_backbone

    save_backbone(build_resnet("resnet10"), tmp_path / "backbone.pt")
    (tmp_path / "dir").mkdir()
    with pytest.raises(CondPretrainError, match="is a folder; give a file name"):
        export_backbone(tmp_path / "backbone.pt", tmp_path / "dir")
    assert main(["export", "--backbone", str(tmp_path / "backbone.pt"), "--out",
                 str(tmp_path / "dir")]) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and len(err.strip().splitlines()) == 1
    assert not any((tmp_path / "dir").iterdir())
