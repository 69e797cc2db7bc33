"""The pool index (relative paths and labels of an image folder), built once and reused.

Listing a million files takes minutes on a network filesystem, and every command that
opens the pool would pay it again. The listing is saved (gzip JSON) under the index
cache folder with the modification time of every folder it walked; it is reused while
none of them changed. Adding, removing or renaming a file changes its folder's
modification time, so a stale index is never used; a file rewritten in place keeps
its name and is read fresh anyway.

The cache folder is ``$CONDPRETRAIN_INDEX_CACHE``, else ``$XDG_CACHE_HOME/condpretrain/index``
(``~/.cache/...``); ``CONDPRETRAIN_INDEX_CACHE=off`` disables it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from condpretrain.atomic import atomic_open
from condpretrain.log import get_logger

log = get_logger(__name__)
# 2: symbolic links followed once, names that are not UTF-8 skipped, what was left out
# counted (``skipped``); a listing of version 1 may hold one image many times over.
FORMAT_VERSION = 2


@dataclass
class FolderListing:
    paths: list[str] = field(default_factory=list)  # relative to the root
    labels: list[str] = field(default_factory=list)
    folders: dict[str, int] = field(default_factory=dict)  # relative folder -> mtime_ns
    skipped: dict[str, int] = field(default_factory=dict)  # what was left out -> how many


def index_cache_dir() -> Path | None:
    configured = os.environ.get("CONDPRETRAIN_INDEX_CACHE")
    if configured is not None:
        return None if configured.lower() in ("", "off", "0", "none") else Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "condpretrain" / "index"


def cached_listing(root: Path, build: Callable[[Path], FolderListing]) -> FolderListing:
    """``build(root)``'s listing, from the cache when every folder is unchanged."""
    cache = index_cache_dir()
    if cache is None:
        return build(root)
    root = root.resolve()
    file = cache / f"{hashlib.sha256(os.fsencode(root)).hexdigest()[:24]}.json.gz"
    listing = _load(file, root)
    if listing is not None and _unchanged(root, listing.folders):
        log.debug("pool index of %s from %s", root, file)
        return listing
    listing = build(root)
    try:
        with atomic_open(file, "wb") as handle, gzip.GzipFile(fileobj=handle, mode="wb") as gz:
            gz.write(json.dumps({"version": FORMAT_VERSION, "root": str(root),
                                 "paths": listing.paths, "labels": listing.labels,
                                 "folders": listing.folders,
                                 "skipped": listing.skipped}).encode("utf-8"))
    except OSError as exc:  # a read-only home must not stop the run
        log.warning("cannot save the pool index to %s (%s)", file, exc)
    return listing


def _load(file: Path, root: Path) -> FolderListing | None:
    """The saved listing of ``root``; None when absent, of another version, or damaged
    (a damaged file is only a cache miss: the folder is listed again)."""
    try:
        with gzip.open(file, "rb") as handle:
            data = json.loads(handle.read())
        if data.get("version") != FORMAT_VERSION or data.get("root") != str(root):
            return None
        return FolderListing(list(data["paths"]), list(data["labels"]), dict(data["folders"]),
                             dict(data["skipped"]))
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _unchanged(root: Path, folders: dict[str, int]) -> bool:
    try:
        return all(os.stat(root / rel).st_mtime_ns == mtime for rel, mtime in folders.items())
    except OSError:
        return False
