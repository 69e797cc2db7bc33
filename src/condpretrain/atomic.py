"""Atomic file writes: a reader never sees a half-written output, nor a mixed set.

Everything the tool writes (manifests, scores, checkpoints, reports) goes through
these helpers: write to a temporary file in the same folder, flush, then rename over
the destination, so a kill leaves the old file or the new one, never a torn one.
A run whose outputs belong together (a selection's pool, scores and subset) writes
them as an :class:`OutputSet`, whose completion marker readers check.
``read_json`` is the one way back in for the JSON files they write.

Files get the mode a plain ``open`` would give (0666 less the umask), not the 0600 of
the temporary file. A disk that is full or read-only while an output is written is a
:class:`WriteError`: one line naming the file, and still an ``OSError`` for callers
that tolerate a failed write (e.g. an optional cache).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np

from condpretrain.errors import CondPretrainError

STAGED_SUFFIX = ".staged"


class WriteError(CondPretrainError, OSError):
    """An output that cannot be written (disk full, read-only, no permission)."""

    def __init__(self, path: str | Path, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause), str(path))
        self.message = f"cannot write {path}: {cause.strerror or cause}"

    def __str__(self) -> str:
        return self.message


def file_mode() -> int:
    """The mode ``open()`` gives a new file: 0666 less this process's umask."""
    return 0o666 & ~_umask()


def _umask() -> int:
    # /proc tells the umask without setting it (os.umask can only swap it, which
    # races with other threads creating files meanwhile).
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _ours(exc: OSError, *paths: str | Path) -> bool:
    """Whether ``exc`` is about writing our file, not something the caller's code read
    meanwhile (a write to a handle raises without a file name)."""
    return exc.filename is None or str(exc.filename) in {str(p) for p in paths}


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise WriteError(path, exc) from None
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, file_mode())
        os.replace(tmp_name, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError) \
                and _ours(exc, tmp_name, path):
            raise WriteError(path, exc) from None
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def save_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_open(path, "wb") as handle:
        np.save(handle, array)


def link_or_copy(source: str | Path, destination: str | Path) -> None:
    """``destination`` names the same bytes as ``source``: a hard link (no second copy),
    a copy where the file system has none; replaced atomically."""
    destination = Path(destination)
    tmp = destination.with_name(f".{destination.name}.link.tmp")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copy2(source, tmp)
        os.replace(tmp, destination)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if _ours(exc, tmp, destination):
            raise WriteError(destination, exc) from None
        raise


def save_with(path: str | Path, saver: Callable[[IO[bytes]], None]) -> None:
    """Atomically write whatever ``saver`` writes to a binary handle (e.g. torch.save)."""
    buffer = io.BytesIO()
    saver(buffer)
    write_bytes(path, buffer.getvalue())


class OutputSet:
    """The files of one run that belong together, written as a set.

    Each file is written (by any writer above) to the staged name :meth:`path` gives,
    beside its destination; leaving the ``with`` block without an error renames them all
    in place, the ``marker`` last. Readers trust a folder only when its marker is there:

    * a failure while writing leaves the previous set whole (staged files are removed);
    * the commit removes the old marker first and syncs the folder before adding the
      new one, so a kill during the commit (a few renames) leaves no marker, never a
      marker beside another run's files.
    """

    def __init__(self, folder: str | Path, marker: str) -> None:
        self.folder = Path(folder)
        self.marker = marker
        self._names: list[str] = []
        self._removed: list[str] = []

    def __enter__(self) -> OutputSet:
        # Staged files a killed run left: nobody else writes here (the folder is locked).
        for stale in self.folder.glob(f".*{STAGED_SUFFIX}"):
            stale.unlink(missing_ok=True)
        return self

    def path(self, name: str) -> Path:
        """Where to write ``name`` now; it takes that name at the commit."""
        if name not in self._names:
            self._names.append(name)
        return self._staged(name)

    def remove(self, name: str) -> None:
        """An earlier run's ``name`` that this set does not have: removed at the commit."""
        self._removed.append(name)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is not None:
            for name in self._names:
                self._staged(name).unlink(missing_ok=True)
            staged = {str(self._staged(name)): name for name in self._names}
            if isinstance(exc, WriteError) and exc.filename in staged:
                # name the output the user knows, not its staged name
                raise WriteError(self.folder / staged[exc.filename], exc) from None
            return
        self.commit()

    def commit(self) -> None:
        if self.marker not in self._names or not self._staged(self.marker).is_file():
            raise RuntimeError(f"output set of {self.folder}: {self.marker} was not written")
        try:
            (self.folder / self.marker).unlink(missing_ok=True)
            _sync_folder(self.folder)
            for name in self._names:
                if name != self.marker:
                    os.replace(self._staged(name), self.folder / name)
            for name in self._removed:
                if name not in self._names:
                    (self.folder / name).unlink(missing_ok=True)
            _sync_folder(self.folder)  # every file in place before the marker says so
            os.replace(self._staged(self.marker), self.folder / self.marker)
            _sync_folder(self.folder)
        except OSError as exc:
            raise WriteError(self.folder / self.marker, exc) from None

    def _staged(self, name: str) -> Path:
        return self.folder / f".{name}{STAGED_SUFFIX}"


def _sync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable, in order (where the platform can)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_REQUIRED: Any = object()


def read_json(path: str | Path, default: Any = _REQUIRED) -> Any:
    """The JSON value stored in ``path``.

    Without ``default`` a missing or unreadable file is a one-line error naming it; with
    one, that file reads as ``default`` (the caller treats it as "not written yet").
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        if default is not _REQUIRED:
            return default
        reason = "not found" if isinstance(exc, FileNotFoundError) else f"unreadable ({exc})"
        raise CondPretrainError(f"{path}: {reason}") from None
