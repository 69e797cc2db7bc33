"""Atomic writers: the mode a plain open gives, one-line errors for a full or read-only
disk, and output sets that are never mixed."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from condpretrain import atomic
from condpretrain.errors import CondPretrainError


@pytest.fixture
def umask() -> Iterator[Callable[[int], int]]:
    before = os.umask(0o022)
    os.umask(before)
    yield os.umask
    os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_outputs_get_the_mode_of_the_umask_not_0600(tmp_path, umask):
    umask(0o022)
    atomic.write_text(tmp_path / "a.txt", "x")
    atomic.save_npy(tmp_path / "a.npy", np.zeros(3))
    assert mode(tmp_path / "a.txt") == 0o644 and mode(tmp_path / "a.npy") == 0o644
    umask(0o077)
    atomic.write_json(tmp_path / "b.json", {})
    assert mode(tmp_path / "b.json") == 0o600
    umask(0o002)
    atomic.save_with(tmp_path / "c.bin", lambda handle: handle.write(b"1"))
    assert mode(tmp_path / "c.bin") == 0o664


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_is_one_line_naming_the_file(tmp_path, monkeypatch):
    target = tmp_path / "scores.json"
    atomic.write_json(target, {"old": True})
    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(CondPretrainError) as caught:
        atomic.write_json(target, {"new": True})
    message = str(caught.value)
    assert message == f"cannot write {target}: No space left on device"
    assert isinstance(caught.value, OSError) and caught.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert atomic.read_json(target) == {"old": True}  # the old file stands
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_read_only_folder_is_one_line(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", read_only)
    with pytest.raises(CondPretrainError, match="cannot write .*x.json: Read-only file system"):
        atomic.write_json(tmp_path / "x.json", {})


def test_errors_of_the_callers_own_reads_are_not_relabelled(tmp_path):
    # An OSError about another file (it names it) is the caller's, not a write error.
    with pytest.raises(FileNotFoundError):
        with atomic.atomic_open(tmp_path / "out.txt") as handle:
            handle.write(open(tmp_path / "missing.txt").read())  # noqa: SIM115
    assert not (tmp_path / "out.txt").exists() and not list(tmp_path.glob(".*.tmp"))


def test_output_set_commits_all_marker_last(tmp_path):
    with atomic.OutputSet(tmp_path, "done.json") as outputs:
        atomic.write_text(outputs.path("a.csv"), "a")
        atomic.write_json(outputs.path("done.json"), {"n": 1})
        assert not (tmp_path / "a.csv").exists()  # nothing visible before the commit
    assert (tmp_path / "a.csv").read_text() == "a" and atomic.read_json(tmp_path / "done.json")
    assert not list(tmp_path.glob(".*.staged"))


def test_output_set_failure_keeps_the_previous_set(tmp_path):
    with atomic.OutputSet(tmp_path, "done.json") as outputs:
        atomic.write_text(outputs.path("a.csv"), "old")
        atomic.write_text(outputs.path("b.csv"), "old")
        atomic.write_json(outputs.path("done.json"), {"run": 1})
    with pytest.raises(RuntimeError, match="boom"):
        with atomic.OutputSet(tmp_path, "done.json") as outputs:
            atomic.write_text(outputs.path("a.csv"), "new")
            raise RuntimeError("boom")
    assert (tmp_path / "a.csv").read_text() == "old" == (tmp_path / "b.csv").read_text()
    assert atomic.read_json(tmp_path / "done.json") == {"run": 1}
    assert not list(tmp_path.glob(".*.staged"))


def test_output_set_full_disk_names_the_output_not_its_staged_name(tmp_path, monkeypatch):
    with pytest.raises(CondPretrainError) as caught:
        with atomic.OutputSet(tmp_path, "done.json") as outputs:
            monkeypatch.setattr(np, "save", no_space)
            atomic.save_npy(outputs.path("scores.npy"), np.zeros(2))
    assert str(caught.value) == f"cannot write {tmp_path / 'scores.npy'}: No space left on device"


def test_output_set_removes_what_the_new_set_lacks(tmp_path):
    (tmp_path / "extra.csv").write_text("from an earlier run")
    with atomic.OutputSet(tmp_path, "done.json") as outputs:
        outputs.remove("extra.csv")
        atomic.write_json(outputs.path("done.json"), {})
    assert not (tmp_path / "extra.csv").exists()


def test_output_set_killed_mid_commit_leaves_no_marker(tmp_path, monkeypatch):
    with atomic.OutputSet(tmp_path, "done.json") as outputs:
        atomic.write_text(outputs.path("a.csv"), "old")
        atomic.write_text(outputs.path("b.csv"), "old")
        atomic.write_json(outputs.path("done.json"), {"run": 1})
    real_replace = os.replace

    def dies_at_b(source, destination):
        if Path(destination) == tmp_path / "b.csv":
            raise OSError(errno.EIO, "killed")
        real_replace(source, destination)

    with pytest.raises(CondPretrainError):
        with atomic.OutputSet(tmp_path, "done.json") as outputs:
            atomic.write_text(outputs.path("a.csv"), "new")
            atomic.write_text(outputs.path("b.csv"), "new")
            atomic.write_json(outputs.path("done.json"), {"run": 2})
            monkeypatch.setattr(os, "replace", dies_at_b)
    # a.csv is new, b.csv old: without a marker no reader trusts the folder
    assert (tmp_path / "a.csv").read_text() == "new" and (tmp_path / "b.csv").read_text() == "old"
    assert not (tmp_path / "done.json").exists()
