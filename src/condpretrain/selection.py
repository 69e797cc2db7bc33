"""Scores -> budget -> subset files, and the ``select`` command end to end.

Outputs of a selection folder, written as one set (:class:`~condpretrain.atomic.OutputSet`):

* ``pool.csv``      path,label,pool - the pool in scoring order (absolute paths)
* ``scores.npy``    float32, one per pool.csv row (NaN = unreadable, never selected)
* ``subset.csv``    path,label,pool,score,rank - the chosen images, best first
* ``eval_duplicates.csv`` pool copies of the target's evaluation images, when searched
* ``selection.json`` method, parameters, seed, policy, models, sizes, skipped files,
  timings, versions; written last, it marks the set complete: a folder without it is refused

How the budget is drawn from the scores is the ``--policy`` (:mod:`condpretrain.policies`);
``--method fuse:A,B`` scores nothing and fuses finished selections' saved scores
(:mod:`condpretrain.scoring.fuse`).

A run that fails leaves the previous run's set whole; the folder is locked while a
run writes it (:mod:`condpretrain.runlock`).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from condpretrain import atomic, eval_duplicates, groups, runlock
from condpretrain.config import SelectConfig, to_dict
from condpretrain.config.select import fused_methods
from condpretrain.data.device_decode import decode_device
from condpretrain.data.shards import write_shards
from condpretrain.data.sources import (
    ImageIndex,
    Target,
    open_pool,
    open_target,
    read_index_csv,
    write_index_csv,
)
from condpretrain.dist import DistContext, barrier, distributed, gather_peak_rss_mb
from condpretrain.errors import CondPretrainError
from condpretrain.log import get_logger
from condpretrain.policies import Draw, draw_recorded, take_top
from condpretrain.scoring import ScoringContext, create_scorer
from condpretrain.scoring.cost import device_hours
from condpretrain.scoring.fuse import SavedScores, fuse
from condpretrain.scoring.runner import score_pool
from condpretrain.version import library_versions

log = get_logger(__name__)

POOL_CSV, SCORES_NPY, SUBSET_CSV, SELECTION_JSON = "pool.csv", "scores.npy", "subset.csv", "selection.json"


@dataclass
class SelectionResult:
    out_dir: Path
    subset_csv: Path
    selected: int
    pool_size: int
    seconds: float


def budget_size(pool_size: int, fraction: float | None, count: int | None) -> int:
    if count is not None:
        return count
    if fraction is None:
        raise CondPretrainError("give a budget: --fraction F or --count N")
    return max(1, int(round(fraction * pool_size)))


def rank_pool(scores: np.ndarray, budget: int, seed: int,
              exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``budget`` best scores, best first (the ``top`` policy).

    Ties are broken by a seeded permutation, so equal scores neither favour the first
    pool listed nor change between runs with the same seed. NaN scores never qualify,
    nor do the indices in ``exclude`` (copies of the target's evaluation images).
    """
    return take_top(scores, Draw(budget, seed, exclude))


def draw_subset(config: SelectConfig, pool: ImageIndex, scores: np.ndarray, budget: int,
                exclude: np.ndarray | None, embeddings: groups.GroupEmbeddings | None = None,
                ) -> tuple[np.ndarray, dict[str, Any]]:
    """The chosen indices (best first) by ``config.policy``, and its selection.json record;
    ``embeddings``: the pool's, clustered into groups for ``--balance-by features``."""
    return draw_recorded(config.policy, scores, Draw(budget, config.seed, exclude,
                                                     config.temperature),
                         pool.labels, pool.pools, config.balance_by,
                         groups.feature_grouping(embeddings, config))


def select(
    sources: list[str] | str,
    target: str | None,
    out: str | Path,
    config: SelectConfig | None = None,
) -> SelectionResult:
    """Score every pool image for relevance to ``target`` and write the chosen subset.

    Under torchrun every rank scores its share of the pool and rank 0 writes the
    outputs; a killed run resumes from its last finished chunk of scores.
    """
    config = config or SelectConfig()
    config.validate()
    out = Path(out)
    started = time.perf_counter()
    if fused_methods(config.method):  # scores nothing: no device, no processes
        with runlock.hold(out):
            return _select_fused(sources, out, config, started)
    with distributed(config.device, config.deterministic) as (dist, device), \
            runlock.hold(out, dist):
        pool_size = _select(sources, target, out, config, dist, device, started)
        selected = atomic.read_json(out / SELECTION_JSON)["selected"]
    return SelectionResult(out, out / SUBSET_CSV, selected, pool_size,
                           time.perf_counter() - started)


def _select(sources: list[str] | str, target: str | None, out: Path, config: SelectConfig,
            dist: DistContext, device: Any, started: float) -> int:
    """Score, rank and (rank 0) write the output set; the pool's size."""
    decode_device(config.decode, device)  # --decode gpu off CUDA: refused before any work
    timings: dict[str, float] = {}
    with _timed(timings, "index"):
        pool = open_pool(sources)
        target_set = open_target(target) if target else None
    context = ScoringContext(config, device,
                             Path(config.cache_dir) if config.cache_dir else out / "cache",
                             dist)
    scorer = create_scorer(config.method, context)
    scorer.check_target(target_set)
    budget = budget_size(len(pool), config.fraction, config.count)  # fail before scoring
    with _timed(timings, "fit"):
        scorer.fit(target_set, pool)
    with _timed(timings, "score"):
        scores, chunks_dir = score_pool(scorer, pool, out)
    with _timed(timings, "eval_duplicates"):
        duplicates = eval_duplicates.search(pool, target_set, config, dist)
    with _timed(timings, "groups"):  # every rank: computing embeddings is shared
        embeddings = groups.embeddings_at_select(config, target_set, pool, context)
    peak_rss_mb = gather_peak_rss_mb(dist)
    if dist.is_main:
        with atomic.OutputSet(out, SELECTION_JSON) as outputs:
            write_index_csv(outputs.path(POOL_CSV), pool)
            atomic.save_npy(outputs.path(SCORES_NPY), scores)
            with _timed(timings, "select"):
                chosen, policy = draw_subset(config, pool, scores, budget,
                                             eval_duplicates.excluded(duplicates, config),
                                             embeddings)
                _write_subset(outputs.path(SUBSET_CSV), pool, scores, chosen)
            _write_duplicates(outputs, duplicates)
            timings["total"] = time.perf_counter() - started
            _write_metadata(outputs.path(SELECTION_JSON), sources, target, config, context,
                            pool, target_set, len(chosen), timings, peak_rss_mb,
                            eval_duplicates.metadata(duplicates, config, chosen), policy)
        shutil.rmtree(chunks_dir, ignore_errors=True)  # scores.npy now holds them
        log.info("selected %d of %d pool images with %s -> %s", len(chosen), len(pool),
                 config.method, out / SUBSET_CSV)
    barrier(dist)
    return len(pool)


def _write_duplicates(outputs: atomic.OutputSet, duplicates: Any) -> None:
    """eval_duplicates.csv when the run searched; else an earlier run's is removed."""
    if duplicates is not None:
        eval_duplicates.write_csv(outputs.path(eval_duplicates.EVAL_DUPLICATES_CSV), duplicates)
    else:
        outputs.remove(eval_duplicates.EVAL_DUPLICATES_CSV)


def _write_metadata(
    path: Path, sources: list[str] | str, target: str | None, config: SelectConfig,
    context: ScoringContext, pool: ImageIndex, target_set: Target | None, selected: int,
    timings: dict[str, float], peak_rss_mb: list[float],
    duplicates: dict[str, Any] | None = None, policy: dict[str, Any] | None = None,
) -> None:
    atomic.write_json(path, {
        "method": config.method,
        "parameters": to_dict(config),
        "seed": config.seed,
        "policy": policy,
        "sources": [sources] if isinstance(sources, str) else list(sources),
        "target": target,
        "models": context.models_used,
        "pool_size": len(pool),
        "pools": _pool_counts(pool),
        "unlisted": dict(pool.unlisted),  # left out of the listing (links, names), by reason
        "target_sizes": _target_sizes(target_set),
        "selected": selected,
        "eval_duplicates": duplicates,
        "skipped": [{"path": p, "reason": r} for p, r in sorted(context.skipped.items())],
        "device": str(context.device),
        "processes": context.dist.world_size,
        "peak_rss_mb": peak_rss_mb,
        "timings": {k: round(v, 3) for k, v in timings.items()},
        # what the method is charged: its own time + the training of the cached models it
        # used, whether this run trained them or loaded them (see scoring/cost.py)
        "cost": context.cost(timings["total"]),
        "versions": library_versions(),
    })


def reselect(
    scores_dir: str | Path,
    out: str | Path,
    fraction: float | None = None,
    count: int | None = None,
    seed: int | None = None,
    keep_eval_duplicates: bool | None = None,
    policy: str | None = None,
    temperature: float | None = None,
    balance_by: str | None = None,
    balance_clusters: int | None = None,
) -> SelectionResult:
    """Choose another budget from a finished selection's saved scores, without scoring.
    Copies of evaluation images that the selection found stay out (``eval_duplicates.csv``)
    unless ``keep_eval_duplicates``; it, ``seed`` and the policy's settings default to the
    selection's own. ``balance_by="features"`` clusters the embeddings it recorded."""
    started = time.perf_counter()
    scores_dir, out = Path(scores_dir), Path(out)
    changes = {name: value for name, value in (
        ("seed", seed), ("keep_eval_duplicates", keep_eval_duplicates), ("policy", policy),
        ("temperature", temperature), ("balance_by", balance_by),
        ("balance_clusters", balance_clusters)) if value is not None}
    with runlock.hold(out):
        return _reselect(scores_dir, out, fraction, count, changes, started)


def read_selection(folder: Path, option: str) -> tuple[dict[str, Any], ImageIndex, np.ndarray]:
    """A finished selection's record, pool and scores; one-line errors naming ``option``."""
    for name in (POOL_CSV, SCORES_NPY):
        if not (folder / name).is_file():
            raise CondPretrainError(f"{option}: {folder} has no {name} (not a selection folder)")
    if not (folder / SELECTION_JSON).is_file():
        # selection.json is the set's completion marker (atomic.OutputSet)
        raise CondPretrainError(f"{option}: {folder} has no {SELECTION_JSON}: not a selection "
                                "folder, or its run did not finish; run select again")
    record = atomic.read_json(folder / SELECTION_JSON)
    if not isinstance(record, dict) or not isinstance(record.get("parameters"), dict):
        raise CondPretrainError(f"{option}: {folder / SELECTION_JSON} is not a selection record")
    pool = read_index_csv(folder / POOL_CSV, option)
    scores = load_scores(folder / SCORES_NPY, option)
    if len(scores) != len(pool):
        raise CondPretrainError(
            f"{option}: {folder / SCORES_NPY} has {len(scores)} scores for {len(pool)} pool images"
        )
    return record, pool, scores


def _reselect(scores_dir: Path, out: Path, fraction: float | None, count: int | None,
              changes: dict[str, Any], started: float) -> SelectionResult:
    previous, pool, scores = read_selection(scores_dir, "--scores")
    config = dataclasses.replace(SelectConfig(**_known(previous["parameters"])),
                                 fraction=fraction, count=count, **changes)
    config.validate()
    duplicates = eval_duplicates.load(scores_dir, pool, previous.get("eval_duplicates"))
    chosen, policy = draw_subset(config, pool, scores, budget_size(len(pool), fraction, count),
                                 eval_duplicates.excluded(duplicates, config),
                                 groups.saved_embeddings(previous, config, scores_dir, len(pool)))
    with atomic.OutputSet(out, SELECTION_JSON) as outputs:
        if out.resolve() != scores_dir.resolve():
            atomic.link_or_copy(scores_dir / POOL_CSV, outputs.path(POOL_CSV))
            atomic.link_or_copy(scores_dir / SCORES_NPY, outputs.path(SCORES_NPY))
            if duplicates is not None:
                atomic.link_or_copy(scores_dir / eval_duplicates.EVAL_DUPLICATES_CSV,
                                    outputs.path(eval_duplicates.EVAL_DUPLICATES_CSV))
            else:
                outputs.remove(eval_duplicates.EVAL_DUPLICATES_CSV)
        _write_subset(outputs.path(SUBSET_CSV), pool, scores, chosen)
        seconds = time.perf_counter() - started
        metadata = dict(previous, parameters=to_dict(config), seed=config.seed, policy=policy,
                        selected=len(chosen), scores_from=str(scores_dir))
        if duplicates is not None:
            metadata["eval_duplicates"] = eval_duplicates.metadata(duplicates, config, chosen)
        metadata["timings"] = dict(previous.get("timings", {}), reselect=round(seconds, 3))
        atomic.write_json(outputs.path(SELECTION_JSON), metadata)
    return SelectionResult(out, out / SUBSET_CSV, len(chosen), len(pool), seconds)


def _select_fused(sources: list[str] | str | None, out: Path, config: SelectConfig,
                  started: float) -> SelectionResult:
    """``--method fuse:A,B``: rank-fuse the saved scores of A, B and draw the budget."""
    folders = [Path(p) for p in str(config.fuse_from).split(",") if p.strip()]
    saved = []
    for folder in folders:
        record, pool, scores = read_selection(folder, "--fuse-from")
        saved.append(SavedScores(folder, str(record.get("method")), record.get("target"),
                                 pool, scores, record))
    parts, scores = fuse(saved, fused_methods(config.method) or [], config.fuse_k)
    first = next(iter(parts.values()))
    pool = first.pool
    if sources and sorted(open_pool(sources).paths) != sorted(pool.paths):
        raise CondPretrainError(f"--source: not the pool that {first.folder} scored")
    budget = budget_size(len(pool), config.fraction, config.count)
    duplicates = eval_duplicates.load(first.folder, pool, first.record.get("eval_duplicates"))
    # the pool is the first fused selection's, in its order: so are its embeddings
    chosen, policy = draw_subset(config, pool, scores, budget,
                                 eval_duplicates.excluded(duplicates, config),
                                 groups.saved_embeddings(first.record, config, first.folder,
                                                         len(pool)))
    with atomic.OutputSet(out, SELECTION_JSON) as outputs:
        write_index_csv(outputs.path(POOL_CSV), pool)
        atomic.save_npy(outputs.path(SCORES_NPY), scores)
        _write_subset(outputs.path(SUBSET_CSV), pool, scores, chosen)
        _write_duplicates(outputs, duplicates)
        seconds = time.perf_counter() - started
        atomic.write_json(outputs.path(SELECTION_JSON), {
            "method": config.method, "parameters": to_dict(config), "seed": config.seed,
            "policy": policy, "fused": {p: str(s.folder) for p, s in parts.items()},
            "sources": first.record.get("sources"), "target": first.target,
            "models": [], "pool_size": len(pool), "pools": _pool_counts(pool),
            "selected": len(chosen), "eval_duplicates": (
                eval_duplicates.metadata(duplicates, config, chosen) if duplicates is not None
                else first.record.get("eval_duplicates")),
            "skipped": first.record.get("skipped", []),
            "timings": {"fuse": round(seconds, 3), "total": round(seconds, 3)},
            "cost": _fused_cost(seconds, {p: s.record for p, s in parts.items()}),
            "versions": library_versions(),
        })
    log.info("selected %d of %d pool images with %s -> %s", len(chosen), len(pool),
             config.method, out / SUBSET_CSV)
    return SelectionResult(out, out / SUBSET_CSV, len(chosen), len(pool), seconds)


def _fused_cost(seconds: float, parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A fusion is charged its own time plus each fused selection's whole cost (a model
    two of them share is counted twice: an upper bound)."""
    costs = {m: r.get("cost") or {} for m, r in parts.items()}
    own_hours = device_hours(seconds, 1)
    return {"own_seconds": round(seconds, 3), "processes": 1,
            "own_device_hours": round(own_hours, 6), "shared": [], "fused": costs,
            "seconds": round(seconds + sum(c.get("seconds", 0.0) for c in costs.values()), 3),
            "device_hours": round(own_hours + sum(c.get("device_hours", 0.0)
                                                  for c in costs.values()), 6)}


def load_scores(path: Path, option: str = "--scores") -> np.ndarray:
    """A selection's scores.npy: one float per pool image; else a one-line error."""
    try:
        scores = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise CondPretrainError(f"{option}: {path} is not a readable scores file "
                                f"({type(exc).__name__})") from None
    if scores.ndim != 1 or not np.issubdtype(scores.dtype, np.floating):
        raise CondPretrainError(f"{option}: {path} holds {scores.dtype} of shape "
                                f"{scores.shape}, not one float score per pool image")
    return scores


def write_subset_shards(selection_dir: str | Path, per_shard: int = 10_000) -> list[Path]:
    """Write a selection's subset as WebDataset shards under ``DIR/shards/``, best first.

    Pre-training then streams a few large files instead of opening millions of small
    ones; the shards are a pool of their own (``--source DIR/shards/subset-{...}.tar``).
    """
    selection_dir = Path(selection_dir)
    subset = read_index_csv(selection_dir / SUBSET_CSV, "--write-shards")
    try:
        return write_shards(subset.paths, subset.labels, selection_dir / "shards", per_shard)
    except OSError as exc:
        raise CondPretrainError(f"--write-shards: cannot copy an image ({exc})") from None


def _write_subset(path: Path, pool: ImageIndex, scores: np.ndarray, chosen: np.ndarray) -> None:
    write_index_csv(path, pool.take(chosen), score=scores[chosen],
                    rank=np.arange(1, len(chosen) + 1))


def _pool_counts(pool: ImageIndex) -> dict[str, int]:
    names, counts = np.unique(np.asarray(pool.pools, dtype=object), return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts, strict=True)}


def _target_sizes(target: Target | None) -> dict[str, int | None]:
    if target is None:
        return {}
    return {"train": len(target.train), "test": len(target.test) if target.test else None,
            "classes": len(target.train.classes)}


def _known(parameters: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(SelectConfig)}
    return {k: v for k, v in parameters.items() if k in names}


@contextmanager
def _timed(timings: dict[str, float], stage: str):
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = time.perf_counter() - started
