"""Score a whole pool in chunks: resumable, and split across torchrun ranks.

The pool is cut into fixed chunks (``chunk_size`` images). Each finished chunk's scores
are saved at once under ``OUT/partial-<fingerprint>/``, so a killed run resumes at the
first missing chunk. Under torchrun, rank r scores chunks r, r+W, r+2W, ... into the
same folder (a shared filesystem across machines, like checkpoints), and rank 0 merges
them: the merged array is the one a single process writes, because a score depends on
its image alone (see :class:`~condpretrain.scoring.base.Scorer`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from condpretrain import atomic
from condpretrain.config import options, to_dict
from condpretrain.data.sources import ImageIndex
from condpretrain.dist import barrier
from condpretrain.log import get_logger
from condpretrain.scoring.base import Scorer

log = get_logger(__name__)

def partial_dir(out: Path, scorer: Scorer, pool: ImageIndex) -> Path:
    # Options declared neutral change how fast scores come, not what they are: a run may
    # resume with other values of these and keep its finished chunks.
    config = scorer.context.config
    neutral = {o.name for o in options(type(config)) if o.neutral}
    settings = {k: v for k, v in to_dict(config).items() if k not in neutral}
    digest = hashlib.sha256()
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for path in pool.paths:
        digest.update(path.encode("utf-8") + b"\0")
    return out / f"partial-{digest.hexdigest()[:16]}"


def score_pool(scorer: Scorer, pool: ImageIndex, out: Path) -> tuple[np.ndarray | None, Path]:
    """All pool scores on rank 0 (``None`` on the other ranks), and the chunks' folder,
    which the caller removes once the merged scores are safely written."""
    context = scorer.context
    chunk = context.config.chunk_size
    chunks = max(1, -(-len(pool) // chunk))
    work = partial_dir(out, scorer, pool)
    dist = context.dist
    mine = range(dist.rank, chunks, dist.world_size)
    done = sum(_chunk_file(work, c).is_file() for c in mine)
    if done:
        log.info("resuming: %d of this process's %d chunks already scored in %s",
                 done, len(mine), work)
    for c in mine:
        if _chunk_file(work, c).is_file():
            continue
        context.skipped.clear()
        part = pool.take(np.arange(c * chunk, min((c + 1) * chunk, len(pool))))
        scores = np.asarray(scorer.score(part), dtype=np.float32)
        # The skipped list first: a chunk counts as done once its scores exist.
        atomic.write_json(work / f"skipped-{c:06d}.json", dict(context.skipped))
        atomic.save_npy(_chunk_file(work, c), scores)
        log.debug("chunk %d/%d scored", c + 1, chunks)
    barrier(dist)
    if not dist.is_main:
        return None, work
    merged = np.concatenate([np.load(_chunk_file(work, c)) for c in range(chunks)])
    context.skipped.clear()
    for c in range(chunks):
        context.skipped.update(json.loads((work / f"skipped-{c:06d}.json").read_text()))
    return merged, work


def _chunk_file(work: Path, chunk: int) -> Path:
    return work / f"scores-{chunk:06d}.npy"
