"""Listing an image folder: class folders walked in parallel, every image listed once.

* **Symbolic links to folders are followed once.** A pool may be assembled from links
  into other data sets (``pool/dogs -> /data/imagenet/n02084071``), so links are
  followed; but every real folder, known by its (device, inode), is listed at most once.
  A link into a folder already listed - ``loop -> .``, a link to a sibling class, two
  links to one place - is not followed, and is counted. A folder reached without a link
  keeps its images over any link to it, so a link never moves images to another class.
  (Following links blindly, a ``loop -> .`` listed each image up to 41 times, until the
  path grew too long.)
* **A name that is not valid UTF-8 is skipped and counted.** Linux allows any bytes in
  a name; Python holds the undecodable ones as surrogate escapes, which no UTF-8 output
  (pool.csv, subset.csv, selection.json) can write: such an image could be scored but
  never written down, and it killed ``select`` with a UnicodeEncodeError.
* A folder that cannot be read (permissions, removed meanwhile) is skipped and counted.

The order is that of a top-down walk with names sorted (each folder's images, then its
sub-folders), and does not depend on the thread count.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from condpretrain.data.extensions import is_image_file, is_utf8
from condpretrain.data.index_cache import FolderListing

REPEATED = "repeated folders (symlink loops, links to folders already listed)"
NOT_UTF8 = "names not valid UTF-8"
UNREADABLE = "folders that could not be read"

Key = tuple[int, int]  # (st_dev, st_ino): a folder, whatever path reaches it


@dataclass
class _Folder:
    rel: str  # relative to the root
    key: Key
    mtime: int
    images: list[str]  # file names, sorted
    linked: bool  # reached through a symbolic link


@dataclass
class _Link:
    rel: str  # the link's own path, relative to the root


def list_folder(root: Path) -> FolderListing:
    """``root``'s images: ImageFolder when class sub-folders hold images, else flat."""
    counts: Counter[str] = Counter()
    entries = sorted(os.scandir(root), key=lambda e: e.name)
    root_key = _key(os.stat(root))
    classes = []
    for entry in entries:
        if entry.is_dir() and not entry.name.startswith("."):
            if is_utf8(entry.name):
                classes.append(entry)
            else:
                counts[NOT_UTF8] += 1
    tops = _class_keys(classes)
    # Real class folders are walked by their own scan: a link reaching one is not followed.
    owned = {root_key} | {tops[e.name] for e in classes if not e.is_symlink() and e.name in tops}

    def scan(entry: os.DirEntry) -> tuple[list[_Folder | _Link], Counter[str]]:
        mine: Counter[str] = Counter()
        if entry.name not in tops:
            mine[UNREADABLE] += 1
            return [], mine
        if entry.is_symlink() and tops[entry.name] in owned:
            mine[REPEATED] += 1
            return [], mine
        # A real class folder stops only at the root (a bind mount of it would loop); a
        # linked one also at every real class folder, which its own scan lists.
        stop = set(owned) if entry.is_symlink() else {root_key}
        return _scan(root, entry.name, entry.is_symlink(), stop, mine), mine

    with ThreadPoolExecutor(max_workers=min(32, (os.cpu_count() or 1) * 4)) as pool:
        scans = list(pool.map(scan, classes))
    for _, found in scans:
        counts.update(found)
    listing = FolderListing(folders={".": os.stat(root).st_mtime_ns})
    folders = [f for walked, _ in scans for f in walked if isinstance(f, _Folder)]
    # Who lists a folder reached many ways: its real path first, then a class that is a
    # link (pool/dogs -> elsewhere), then a link met inside a class, in class order.
    real = {root_key} | {f.key for f in folders if not f.linked}
    claimed = real | {f.key for f in folders}
    taken: set[Key] = {root_key}
    for entry, (walked, _) in zip(classes, scans, strict=True):
        _emit(root, walked, entry.name, listing, (real, claimed, taken), counts)
    if not listing.paths:  # a flat, unlabelled folder
        for entry in entries:
            if entry.is_file() and is_image_file(entry.name):
                if is_utf8(entry.name):
                    listing.paths.append(entry.name)
                else:
                    counts[NOT_UTF8] += 1
        listing.labels = [""] * len(listing.paths)
    listing.skipped = {reason: n for reason, n in sorted(counts.items()) if n}
    return listing


def _class_keys(classes: list[os.DirEntry]) -> dict[str, Key]:
    keys = {}
    for entry in classes:
        try:
            keys[entry.name] = _key(entry.stat())  # follows a link: the folder it names
        except OSError:
            pass
    return keys


def _emit(root: Path, walked: list[_Folder | _Link], label: str, listing: FolderListing,
          keys: tuple[set[Key], set[Key], set[Key]], counts: Counter[str]) -> None:
    """Add ``walked``'s folders to ``listing`` unless listed already; follow its links
    into folders no class scan reached. ``keys``: folders reached without a link, folders
    any class scan reached, folders listed so far (grows)."""
    real, claimed, taken = keys
    for item in walked:
        if isinstance(item, _Link):
            try:
                target = _key(os.stat(os.path.join(root, item.rel)))
            except OSError:
                counts[UNREADABLE] += 1
                continue
            if target in taken or target in claimed:
                counts[REPEATED] += 1
                continue
            _emit(root, _scan(root, item.rel, True, taken | claimed, counts), label, listing,
                  keys, counts)
            continue
        if item.key in taken or (item.linked and item.key in real):
            counts[REPEATED] += 1
            continue
        taken.add(item.key)
        listing.folders[item.rel] = item.mtime
        listing.paths += [os.path.join(item.rel, name) for name in item.images]
        listing.labels += [label] * len(item.images)


def _scan(root: Path, top: str, linked: bool, stop: set[Key],
          counts: Counter[str]) -> list[_Folder | _Link]:
    """The folders under ``top`` (relative to ``root``) in top-down order, never through a
    link: each link to a folder is left as a :class:`_Link` in its place. Folders whose
    key is in ``stop`` (listed by another scan), or already met, are skipped."""
    out: list[_Folder | _Link] = []
    seen = set(stop)
    stack: list[str | _Link] = [top]
    while stack:
        item = stack.pop()
        if isinstance(item, _Link):
            out.append(item)
            continue
        try:
            info = os.stat(os.path.join(root, item))
            with os.scandir(os.path.join(root, item)) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError:
            counts[UNREADABLE] += 1
            continue
        key = _key(info)
        if key in seen:
            counts[REPEATED] += 1
            continue
        seen.add(key)
        images, below = [], []
        for entry in entries:
            if not is_utf8(entry.name):
                counts[NOT_UTF8] += 1
            elif _is_dir(entry):
                rel = os.path.join(item, entry.name)
                below.append(_Link(rel) if entry.is_symlink() else rel)
            elif is_image_file(entry.name):
                images.append(entry.name)
        out.append(_Folder(item, key, info.st_mtime_ns, images, linked))
        stack.extend(reversed(below))
    return out


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows a link, as os.walk does
    except OSError:
        return False


def _key(info: os.stat_result) -> Key:
    return info.st_dev, info.st_ino
