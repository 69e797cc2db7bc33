"""Atomic file writes: a reader never sees a half-written output.

Everything the tool writes (manifests, scores, checkpoints, reports) goes through
these helpers: write to a temporary file in the same folder, flush, then rename over
the destination, so a kill leaves the old file or the new one, never a torn one.
``read_json`` is the one way back in for the JSON files they write.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from condpretrain.errors import CondPretrainError


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
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
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f".{destination.name}.link.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copy2(source, tmp)
    os.replace(tmp, destination)


def save_with(path: str | Path, saver: Callable[[IO[bytes]], None]) -> None:
    """Atomically write whatever ``saver`` writes to a binary handle (e.g. torch.save)."""
    buffer = io.BytesIO()
    saver(buffer)
    write_bytes(path, buffer.getvalue())


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
