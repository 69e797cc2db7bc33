"""Keeping copies of the target's evaluation images out of a selection.

``select`` searches the pool for copies of the target's test/val images
(:mod:`condpretrain.data.duplicates`), lists them in ``eval_duplicates.csv`` and in
``selection.json``, and leaves them out of the subset unless ``--keep-eval-duplicates``.
``scores.npy`` keeps their scores: the exclusion happens when ranking, so a re-selection
from saved scores (``select --scores``) reads the list back and honours it too.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from condpretrain.atomic import atomic_open
from condpretrain.config import SelectConfig
from condpretrain.data.duplicates import find_duplicates
from condpretrain.data.sources import ImageIndex, Target
from condpretrain.dist import DistContext
from condpretrain.errors import CondPretrainError
from condpretrain.log import get_logger

log = get_logger(__name__)

EVAL_DUPLICATES_CSV = "eval_duplicates.csv"
COLUMNS = ("pool_index", "path", "pool", "eval_path", "hamming", "cosine", "flipped")


@dataclass
class EvalDuplicates:
    """The pool images found to copy an evaluation image (one row each, pool order)."""

    eval_images: int  # how many evaluation images were searched for
    rows: list[dict[str, Any]] = field(default_factory=list)

    def indices(self) -> np.ndarray:
        return np.array([int(r["pool_index"]) for r in self.rows], dtype=np.int64)


def search(pool: ImageIndex, target: Target | None, config: SelectConfig,
           dist: DistContext) -> EvalDuplicates | None:
    """Copies of ``target``'s evaluation images in ``pool`` (every rank takes part);
    None when the target has no test/val split to compare against."""
    held = target.evaluation if target is not None else None
    if held is None or not len(held):
        return None
    found = find_duplicates(pool.paths, held.paths, workers=config.workers,
                            batch_size=config.batch_size, max_pixels=config.max_image_pixels,
                            dist=dist)
    rows = [{"pool_index": d.pool_index, "path": pool.paths[d.pool_index],
             "pool": pool.pools[d.pool_index], "eval_path": held.paths[d.eval_index],
             "hamming": d.hamming, "cosine": d.cosine, "flipped": d.flipped} for d in found]
    if rows:
        log.warning("%d pool images are copies of %s's test/val images: %s (%s)", len(rows),
                    target.name if target else "the target",
                    "kept selectable" if config.keep_eval_duplicates else "never selected",
                    EVAL_DUPLICATES_CSV)
    return EvalDuplicates(len(held), rows)


def excluded(found: EvalDuplicates | None, config: SelectConfig) -> np.ndarray | None:
    """Pool indices that ranking must skip."""
    if found is None or config.keep_eval_duplicates:
        return None
    return found.indices()


def write_csv(path: Path, found: EvalDuplicates) -> None:
    with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(found.rows)


def read_csv(path: Path, pool: ImageIndex, eval_images: int) -> EvalDuplicates:
    """The list a selection wrote, checked against its pool.csv (same order)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        index = _integer(row.get("pool_index"))
        if not 0 <= index < len(pool) or pool.paths[index] != row.get("path"):
            raise CondPretrainError(f"{path}: row {row.get('pool_index')} does not match "
                                    "pool.csv (not written with this selection)")
        row["pool_index"] = index
    return EvalDuplicates(eval_images, rows)


def load(folder: Path, pool: ImageIndex, block: Any) -> EvalDuplicates | None:
    """The list a finished selection in ``folder`` saved; None when it has none."""
    path = folder / EVAL_DUPLICATES_CSV
    if not path.is_file():
        return None
    eval_images = block.get("eval_images", 0) if isinstance(block, dict) else 0
    return read_csv(path, pool, int(eval_images))


def _integer(text: str | None) -> int:
    try:
        return int(text or "")
    except ValueError:
        return -1


def metadata(found: EvalDuplicates | None, config: SelectConfig,
             chosen: np.ndarray) -> dict[str, Any]:
    """The ``eval_duplicates`` block of ``selection.json``."""
    if found is None:
        return {"searched": False, "reason": "the target has no test/val split"}
    picked = int(np.isin(found.indices(), chosen).sum()) if found.rows else 0
    return {"searched": True, "eval_images": found.eval_images, "found": len(found.rows),
            "excluded": not config.keep_eval_duplicates, "in_subset": picked,
            "file": EVAL_DUPLICATES_CSV,
            "list": [{"path": r["path"], "pool": r["pool"], "matched": r["eval_path"],
                      "hamming": int(r["hamming"]), "cosine": float(r["cosine"]),
                      "flipped": str(r["flipped"]) in ("True", "true", "1")}
                     for r in found.rows]}


__all__ = ["EVAL_DUPLICATES_CSV", "EvalDuplicates", "excluded", "load", "metadata",
           "read_csv", "search", "write_csv"]
