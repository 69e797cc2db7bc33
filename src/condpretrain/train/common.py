"""What pre-training and fine-tuning share around the loop: image sources (cached or
decoded), resume checks, the finished run's record and result, and the backbone's method."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from condpretrain.config import options, to_dict
from condpretrain.data.cache import DecodedImages, build_cache, stored_size
from condpretrain.dist import DistContext, barrier
from condpretrain.errors import CondPretrainError
from condpretrain.log import get_logger
from condpretrain.train.run import CostMeter, RunDir

log = get_logger(__name__)

@dataclass
class RunResult:
    """What a finished run left: its folder, ``result.json`` and ``run.json`` (cost)."""

    run_dir: Path
    result: dict[str, Any]
    cost: dict[str, Any]


def finished(run: RunDir) -> RunResult:
    return RunResult(run.path, run.read_result() or {}, run.read_cost() or {})


def image_source(paths: Sequence[str], resolution: int, *, cache: bool, cache_dir: str | None,
                 run: RunDir, workers: int, max_pixels: int, ctx: DistContext):
    """Whole images stored at ``stored_size(resolution)``: from the cache (built once by
    rank 0) or decoded per read. Its ``build_seconds`` (rank 0's time building the cache,
    0 when reused or uncached) goes to :meth:`CostMeter.add_cache` via :func:`cache_seconds`."""
    size = stored_size(resolution)
    if not cache:
        return DecodedImages(list(paths), size, max_pixels)
    folder = Path(cache_dir) if cache_dir else run.path / "cache"
    if ctx.is_main:
        # The builder's DataLoader draws a seed from torch's RNG; keep the run's stream intact
        # so training from the cache equals training without it.
        with torch.random.fork_rng(devices=[]):
            source = build_cache(paths, size, folder, workers, max_pixels)
    barrier(ctx)
    if not ctx.is_main:
        source = build_cache(paths, size, folder, workers, max_pixels, write=False)
    return source


def cache_seconds(sources: Sequence[Any]) -> float:
    """Seconds this run spent building the image caches of ``sources`` (None skipped)."""
    return float(sum(getattr(source, "build_seconds", 0.0) for source in sources
                     if source is not None))


# The inputs key of a fingerprint of the training images (see images_fingerprint).
IMAGES_KEY = "images_sha256"


def images_fingerprint(paths: Sequence[str], labels: Sequence[str] = ()) -> str:
    """A short hash of the training images in order (their paths and labels): recorded
    in config.yaml's inputs, so a resume notices a subset file (or a pool, or a target)
    whose content changed at the same path."""
    payload = json.dumps([list(paths), list(labels)])  # ASCII: odd names escaped, no error
    return hashlib.sha256(payload.encode("ascii")).hexdigest()[:16]


def check_resume(run: RunDir, config: Any, inputs: dict[str, Any],
                 resolved: dict[str, Any] | None = None, may_differ: Sequence[str] = ()) -> None:
    """A resumed run, finished or not, must use the options and inputs it started with,
    bar the options declared neutral (they change where or how fast it runs, not its
    results) and ``may_differ`` (e.g. a downstream run's length, which may be extended)."""
    saved = run.read_config()
    if not saved:
        return
    neutral = {o.name for o in options(type(config)) if o.neutral} | set(may_differ)
    old = {**saved.get("inputs", {}), **saved.get("config", {})}
    new = {**inputs, **(resolved if resolved is not None else to_dict(config))}
    where = run.path / "config.yaml"
    for key, value in new.items():
        if key in neutral or key not in old:
            continue
        if _norm(old[key]) == _norm(value):
            continue
        if key == IMAGES_KEY:
            raise CondPretrainError(
                f"--resume: the training images differ from those recorded in {where} "
                f"(fingerprint {old[key]}, now {value}: the subset, pool or target changed "
                "at the same path); resume with the same images or use another --out")
        raise CondPretrainError(
            f"--resume: {key} was {old[key]!r} in {where}, now {value!r}; "
            "resume with the same options or use another --out")


def open_run(run: RunDir, config: Any, inputs: dict[str, Any], resume: bool,
             resolved: dict[str, Any] | None = None, extendable: Sequence[str] = ()
             ) -> RunResult | None:
    """Start ``run``: with ``resume``, the options and images must be those it started
    with (a finished run's result is returned only then; an unfinished one may change
    the ``extendable`` options, e.g. a longer schedule); the folder is prepared."""
    if resume:
        check_resume(run, config, inputs, resolved,
                     may_differ=() if run.finished() else extendable)
        if run.finished():
            log.info("%s is already finished", run.path)
            return finished(run)
    run.prepare(resume)
    return None


def _norm(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def complete(run: RunDir, cost: CostMeter, result: dict[str, Any], ctx: DistContext,
             **info: Any) -> RunResult:
    """Mark the run done: ``run.json`` (status done, ``info``) and ``result.json``."""
    cost_state = run.write_cost(cost, status="done", **info)
    run.write_result(result)
    barrier(ctx)  # no rank leaves before rank 0 has written the results
    return RunResult(run.path, result, cost_state)


def backbone_mode(init: str | None) -> str | None:
    """The pre-training method (``mode``) that made the backbone file ``init``: from the
    run.json (or config.yaml) of the run folder it lies in; None when unknown."""
    if not init:
        return None
    run = RunDir(Path(init).parent)
    mode = (run.read_cost() or {}).get("mode")
    if not mode:
        mode = ((run.read_config() or {}).get("config") or {}).get("mode")
    return str(mode) if mode else None
