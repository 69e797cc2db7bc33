"""Image collections as one columnar index: ImageFolder, CSV manifests, flat folders.

A *pool* is any number of sources unioned, each image keeping its pool's name. A
*target* has a train split (labelled or not) and optionally a test split. Only paths
and labels are held in memory; pixels are decoded on demand by
:class:`~condpretrain.data.images.ImageDataset`.

Accepted layouts (the spec's ``PATH`` may be prefixed with ``NAME=`` to name a pool):

* ``ROOT/<class>/<image>``           - torchvision ImageFolder (a labelled pool)
* ``ROOT/{train,test|val}/<class>/<image>`` - a labelled target with its splits
* ``ROOT/<image>``                   - a flat, unlabelled folder
* ``VOC2007/{JPEGImages,ImageSets}`` - a Pascal VOC target (or its JPEGImages folder): its
  split lists, never the whole folder, which also holds the test / val images
* ``manifest.csv`` with header ``path,label[,split]``, paths relative to the CSV's folder
* ``pool-{000000..000127}.tar``      - WebDataset shards (``KEY.jpg`` + ``KEY.cls``), read in place
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from condpretrain.atomic import atomic_open
from condpretrain.data.extensions import is_image_file, is_utf8
from condpretrain.data.index_cache import FolderListing, cached_listing
from condpretrain.data.listing import list_folder
from condpretrain.data.shards import index_shards, is_shard_spec
from condpretrain.errors import CondPretrainError
from condpretrain.log import get_logger

log = get_logger(__name__)

TEST_SPLIT_NAMES = ("test", "val")
# A VOC target trains on the first train list found (Main/trainval is the detection
# training set, and in VOC2012 holds every Segmentation/train image too) less any image
# that an evaluation list names; every evaluation list the downstream commands score on
# (detect: Main/test, segment: Segmentation/val) makes its test split.
VOC_TRAIN_LISTS = ("Main/trainval", "Segmentation/train", "Main/train")
VOC_EVAL_LISTS = ("Main/test", "Segmentation/val", "Segmentation/test")


@dataclass
class ImageIndex:
    """Paths, labels ("" when unlabelled) and pool names, aligned by position."""

    paths: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    pools: list[str] = field(default_factory=list)
    # What listing the folders left out, e.g. {"names not valid UTF-8": 2}; not part
    # of the index's identity (a pool.csv read back has none).
    unlisted: dict[str, int] = field(default_factory=dict, compare=False)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def labelled(self) -> bool:
        return len(self) > 0 and all(self.labels)

    @property
    def classes(self) -> list[str]:
        return sorted({label for label in self.labels if label})

    def label_ids(self, classes: list[str] | None = None) -> np.ndarray:
        """Integer labels against ``classes`` (default: this index's own); -1 if unknown."""
        lookup = {name: i for i, name in enumerate(classes or self.classes)}
        return np.array([lookup.get(label, -1) for label in self.labels], dtype=np.int64)

    def take(self, indices: np.ndarray | list[int]) -> ImageIndex:
        return ImageIndex(
            [self.paths[i] for i in indices],
            [self.labels[i] for i in indices],
            [self.pools[i] for i in indices],
        )

    @staticmethod
    def concat(parts: list[ImageIndex]) -> ImageIndex:
        merged = ImageIndex()
        for part in parts:
            merged.paths += part.paths
            merged.labels += part.labels
            merged.pools += part.pools
            for reason, count in part.unlisted.items():
                merged.unlisted[reason] = merged.unlisted.get(reason, 0) + count
        return merged


@dataclass
class Target:
    name: str
    train: ImageIndex
    test: ImageIndex | None = None
    # Every image of an evaluation split (test and val both, when a target has both);
    # the test split when unset. Pool copies of these are kept out of selection.
    held_out: ImageIndex | None = None

    @property
    def labelled(self) -> bool:
        return self.train.labelled

    @property
    def evaluation(self) -> ImageIndex | None:
        return self.held_out if self.held_out is not None else self.test


def parse_spec(spec: str) -> tuple[str, Path]:
    """``NAME=PATH`` or ``PATH`` (the name is then the folder's or file's stem). The path
    comes back absolute, so the pool.csv / subset.csv written from it name images that
    any working directory finds."""
    name, sep, path = spec.partition("=")
    if sep and name and not os.path.exists(spec):
        return name, Path(os.path.abspath(path))
    path = Path(spec)
    if path.suffix.lower() in (".csv", ".tar"):
        # pool-{000000..000127}.tar -> "pool"
        return re.split(r"[-_]?\{", path.stem)[0] or "pool", Path(os.path.abspath(path))
    return path.name or "pool", Path(os.path.abspath(path))


def open_pool(specs: list[str] | str, option: str = "--source") -> ImageIndex:
    """Union of every source in ``specs``; each image keeps its pool's name."""
    specs = [specs] if isinstance(specs, str) else list(specs)
    if not specs:
        raise CondPretrainError(f"{option}: give at least one image pool")
    parts, seen = [], set()
    for spec in specs:
        name, path = parse_spec(spec)
        if name in seen:
            raise CondPretrainError(
                f"{option}: two pools are named {name!r}; name them apart with NAME=PATH"
            )
        seen.add(name)
        parts.append(_read_source(path, name, option, splits=None))
    return ImageIndex.concat(parts)


def open_target(spec: str, option: str = "--target") -> Target:
    """A target dataset: its train split, and its test (or val) split when it has one."""
    name, path = parse_spec(spec)
    _require_utf8(path, option)
    _require_exists(path, option)
    voc = voc_root(path)
    if voc is not None:
        # VOC2007/JPEGImages is named after VOC2007, as VOC2007 itself is.
        return _read_voc_target(voc, voc.name if name == path.name else name, option)
    if path.is_dir() and (path / "train").is_dir():
        train = _read_folder(path / "train", name, option)
        held = [_read_folder(path / s, name, option) for s in TEST_SPLIT_NAMES
                if (path / s).is_dir()]
        test = held[0] if held else None
        return Target(name, train, test, ImageIndex.concat(held) if len(held) > 1 else None)
    if path.is_file():
        train = _read_source(path, name, option, splits=("train", ""))
        test = _read_source(path, name, option, splits=TEST_SPLIT_NAMES, allow_empty=True)
        return Target(name, train, test if len(test) else None)
    return Target(name, _read_folder(path, name, option))


def voc_root(path: Path) -> Path | None:
    """The VOC folder of ``path`` (it, or the folder above its JPEGImages), else None."""
    for root in (path, path.parent if path.name == "JPEGImages" else None):
        if root is not None and (root / "JPEGImages").is_dir() and (root / "ImageSets").is_dir():
            return root
    return None


def _read_voc_target(root: Path, name: str, option: str) -> Target:
    """A VOC target from its split lists: the train list less every evaluation image."""
    files = {os.path.splitext(e.name)[0]: e.name for e in os.scandir(root / "JPEGImages")
             if e.is_file() and is_image_file(e.name)}
    held_ids: list[str] = []
    for listed in VOC_EVAL_LISTS:
        held_ids += _voc_list(root, listed) or []
    held_ids = list(dict.fromkeys(held_ids))
    lists = {t: _voc_list(root, t) for t in VOC_TRAIN_LISTS}
    train_list = next((t for t, ids in lists.items() if ids is not None), None)
    if train_list is None:
        raise CondPretrainError(f"{option}: {root / 'ImageSets'} has none of the split lists "
                                f"{', '.join(t + '.txt' for t in VOC_TRAIN_LISTS)}")
    held = set(held_ids)
    train_ids = [i for i in lists[train_list] or [] if i not in held]
    log.info("VOC target %s: train = ImageSets/%s.txt less the evaluation lists (%d images), "
             "test = the evaluation lists (%d images)", root, train_list, len(train_ids),
             len(held_ids))
    train = _voc_index(root, train_list, train_ids, files, name)
    test = _voc_index(root, "evaluation lists", held_ids, files, name) if held_ids else None
    return Target(name, train, test)


def _voc_list(root: Path, listed: str) -> list[str] | None:
    """Image ids of ``ImageSets/<listed>.txt`` (first column), None when absent."""
    path = root / "ImageSets" / f"{listed}.txt"
    if not path.is_file():
        return None
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def _voc_index(root: Path, listed: str, ids: list[str], files: dict[str, str],
               name: str) -> ImageIndex:
    missing = [i for i in ids if i not in files]
    if missing:
        raise CondPretrainError(f"{root / 'ImageSets'}: {listed} names {len(missing)} images "
                                f"not in JPEGImages (first: {missing[0]})")
    paths = [os.path.join(root, "JPEGImages", files[i]) for i in ids]
    return ImageIndex(paths, [""] * len(paths), [name] * len(paths))


def write_index_csv(path: str | Path, index: ImageIndex, **columns: np.ndarray) -> None:
    """``path,label,pool[,extra...]`` - the format of pool.csv and subset.csv."""
    with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "pool", *columns])
        extras = list(columns.values())
        for i in range(len(index)):
            writer.writerow([index.paths[i], index.labels[i], index.pools[i],
                             *(_csv_value(column[i]) for column in extras)])


def read_index_csv(path: str | Path, option: str = "--subset") -> ImageIndex:
    """Read back a pool.csv / subset.csv written by :func:`write_index_csv`."""
    path = Path(path)
    _require_exists(path, option)
    rows = _read_csv_rows(path, required=("path", "label", "pool"))
    return ImageIndex([r["path"] for r in rows], [r["label"] for r in rows],
                      [r["pool"] for r in rows])


def _read_source(
    path: Path, name: str, option: str, splits: tuple[str, ...] | None, allow_empty: bool = False
) -> ImageIndex:
    _require_utf8(path, option)
    if is_shard_spec(str(path)):
        paths, labels = index_shards(str(path), option)
        return ImageIndex(paths, labels, [name] * len(paths))
    _require_exists(path, option)
    if path.is_dir():
        return _read_folder(path, name, option)
    if path.suffix.lower() != ".csv":
        raise CondPretrainError(f"{option}: {path} is neither a folder nor a .csv manifest")
    return _read_manifest(path, name, splits, allow_empty)


def _read_folder(root: Path, name: str, option: str) -> ImageIndex:
    """ImageFolder when class sub-folders hold images, else a flat unlabelled folder."""
    listing = cached_listing(root, _list_folder)
    if not listing.paths:
        raise CondPretrainError(
            f"{option}: no images found in {root} "
            "(expected ROOT/<class>/<image>, ROOT/train/<class>/<image> or a flat image folder)"
        )
    if listing.skipped:
        log.warning("%s: left out %s", root,
                    ", ".join(f"{reason}: {n}" for reason, n in listing.skipped.items()))
    return ImageIndex([os.path.join(root, p) for p in listing.paths], listing.labels,
                      [name] * len(listing.paths), dict(listing.skipped))


def _list_folder(root: Path) -> FolderListing:
    """The folder's listing (see :mod:`~condpretrain.data.listing`: links followed once,
    names that are not UTF-8 skipped, both counted)."""
    return list_folder(root)


def _read_manifest(
    path: Path, name: str, splits: tuple[str, ...] | None, allow_empty: bool
) -> ImageIndex:
    rows = _read_csv_rows(path, required=("path", "label"))
    base = path.parent
    index = ImageIndex()
    for row in rows:
        if splits is not None and row.get("split", "").strip().lower() not in splits:
            continue
        index.paths.append(str(base / row["path"]))
        index.labels.append(row["label"].strip())
    if not index.paths and not allow_empty:
        wanted = f" with split in {splits}" if splits else ""
        raise CondPretrainError(f"{path}: the manifest lists no images{wanted}")
    index.pools = [name] * len(index.paths)
    return index


def _read_csv_rows(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in reader.fieldnames or []]
            missing = [c for c in required if c not in header]
            if missing:
                raise CondPretrainError(
                    f"{path}: the header must name the columns {','.join(required)} "
                    f"(missing: {', '.join(missing)})"
                )
            reader.fieldnames = header
            rows = []
            for row in reader:
                if not row.get("path"):
                    raise CondPretrainError(f"{path}, line {reader.line_num}: empty path")
                rows.append({k: (v or "") for k, v in row.items() if k is not None})
            return rows
    except UnicodeDecodeError:
        raise CondPretrainError(f"{path}: not a UTF-8 text CSV file") from None
    except csv.Error as exc:
        raise CondPretrainError(f"{path}: malformed CSV ({exc})") from None


def _require_utf8(path: Path, option: str) -> None:
    """Image paths are written to UTF-8 files (pool.csv, subset.csv): a pool whose own
    path is not valid UTF-8 could be scored but never written down."""
    if not is_utf8(str(path)):
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise CondPretrainError(f"{option}: the path {shown} is not valid UTF-8; rename it")


def _require_exists(path: Path, option: str) -> None:
    if not path.exists():
        raise CondPretrainError(f"{option}: no such file or folder: {path}")


def _csv_value(value: object) -> str:
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)
