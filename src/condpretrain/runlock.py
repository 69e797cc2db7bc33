"""One run per output folder, and a folder that can take the run's files.

Every command that writes a folder (select, pretrain, finetune, detect, segment, run,
demo) enters :func:`hold` before any long work:

* the folder is checked (:func:`check_writable`): created when missing, not a file,
  and able to take a new file: a probe is written, synced and removed, so a read-only
  folder or a full disk fails in seconds, not after training a model;
* ``OUT/.lock`` is locked for the run's life. A second run into the folder is
  refused in one line naming the holder (pid, host, start time). The kernel drops the
  lock when its process ends, kill -9 included: a crashed run leaves no stale lock,
  only the small ``.lock`` file, which is harmless. It is a POSIX record lock
  (``fcntl.lockf``), not ``flock``: forked children (DataLoader workers) do not
  inherit it, so none of them can keep a folder locked after its run, and NFS
  supports it.

Under torchrun only rank 0 locks (the ranks are one run) and every rank gets its
verdict, so all stop together. Holding a folder the same thread already holds is a
no-op (``demo`` runs the experiment grid into its own folder). A file system without
locks (ENOLCK) runs unlocked, with a warning.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch.distributed

from condpretrain.dist import DistContext, gather, is_main_process
from condpretrain.errors import CondPretrainError
from condpretrain.log import get_logger

try:
    import fcntl
except ImportError:  # Windows: no POSIX locks; folders are not locked there
    fcntl = None  # type: ignore[assignment]

log = get_logger(__name__)

LOCK_FILE = ".lock"
PROBE_BYTES = 64 * 1024  # a full disk refuses this much, where an empty file still fits


@dataclass
class _Held:
    fd: int | None  # None: locking unsupported there, the folder is held in name only
    thread: int
    depth: int = 1


_held: dict[str, _Held] = {}
_guard = threading.Lock()


@contextmanager
def hold(folder: str | Path, ctx: DistContext | None = None,
         option: str = "--out") -> Iterator[Path]:
    """Check ``folder`` and lock it for the block; a one-line error when another run
    holds it or it cannot be written. ``ctx``: torchrun's group (rank 0 locks for all);
    without one, ranks other than 0 of a torchrun launch do not lock."""
    folder = Path(folder)
    main = ctx.is_main if ctx is not None else is_main_process()
    # rank 0's verdict goes to every rank (a context without a process group: a test's)
    shared = ctx is not None and ctx.enabled and torch.distributed.is_initialized()
    key, error = None, None
    if main:
        try:
            key = _acquire(folder, option)
        except CondPretrainError as exc:
            if not shared:
                raise
            error = str(exc)
    if shared:
        error = gather(error, ctx)[0]
        if error is not None:
            if key is not None:
                _release(key)
            raise CondPretrainError(error)
    try:
        yield folder
    finally:
        if key is not None:
            _release(key)


def check_writable(folder: str | Path, option: str = "--out") -> Path:
    """``folder`` exists (created if need be) and takes new files; else one line."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CondPretrainError(f"{option} {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CondPretrainError(f"{option} {folder}: cannot create the folder "
                                f"({_reason(exc)})") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=folder)
        try:
            os.write(fd, bytes(PROBE_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise CondPretrainError(f"{option} {folder} is not writable ({_reason(exc)})") from None
    return folder


def _acquire(folder: Path, option: str) -> str:
    check_writable(folder, option)
    key = os.path.realpath(folder)
    me = threading.get_ident()
    with _guard:
        held = _held.get(key)
        if held is not None:
            if held.thread != me:
                raise CondPretrainError(f"{option} {folder} is in use by another run of this "
                                        "process; choose another folder")
            held.depth += 1
            return key
        _held[key] = _Held(_lock(folder, option), me)
    return key


def _lock(folder: Path, option: str) -> int | None:
    if fcntl is None:
        return None
    path = folder / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise CondPretrainError(f"{option} {folder}: cannot open its lock file "
                                f"({_reason(exc)})") from None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):  # another process holds it
            holder = _holder(fd)
            os.close(fd)
            raise CondPretrainError(f"{option} {folder} is in use by another run ({holder}); "
                                    "wait for it to end or choose another folder") from None
        # e.g. ENOLCK: a file system without locks
        log.warning("%s: cannot lock %s (%s); running without a lock", option, path,
                    _reason(exc))
        os.close(fd)
        return None
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with contextlib.suppress(OSError):  # the note is for people; the lock is what counts
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n"
                  .encode(), 0)
    return fd


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text.splitlines()[0] if text else "holder unknown"


def _release(key: str) -> None:
    with _guard:
        held = _held[key]
        held.depth -= 1
        if held.depth:
            return
        del _held[key]
    if held.fd is not None:
        with contextlib.suppress(OSError):
            os.ftruncate(held.fd, 0)  # while still locked: no one else writes it yet
        os.close(held.fd)  # closing it drops the lock


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


__all__ = ["LOCK_FILE", "hold", "check_writable"]
