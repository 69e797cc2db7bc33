"""What pre-training and fine-tuning share around the loop: image sources (cached or
decoded), DDP wrapping, resume checks, the checkpoint callback, and the returned result."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from condpretrain.data.cache import DecodedImages, build_cache, stored_size
from condpretrain.errors import CondPretrainError
from condpretrain.log import get_logger
from condpretrain.train.dist import DistContext, barrier
from condpretrain.train.loop import Position, Trainer
from condpretrain.train.run import CostMeter, RunDir

log = get_logger(__name__)

# Options that may change between a killed run and its resume without changing results.
RESUME_FREE = {"workers", "device", "checkpoint_minutes", "cache", "cache_dir"}


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
    """Pre-resized images: from the uint8 cache (built once by rank 0) or decoded per read."""
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


def check_resume(run: RunDir, config: dict[str, Any], inputs: dict[str, Any]) -> None:
    """A resumed run must use the options it started with (bar the harmless ones)."""
    saved = run.read_config()
    if not saved:
        return
    old = {**saved.get("inputs", {}), **saved.get("config", {})}
    new = {**inputs, **config}
    for key, value in new.items():
        if key in RESUME_FREE or key not in old:
            continue
        if _norm(old[key]) != _norm(value):
            raise CondPretrainError(
                f"--resume: {key} was {old[key]!r} in {run.path / 'config.yaml'}, now {value!r}; "
                "resume with the same options or use another --out")


def _norm(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def wrap_ddp(model: nn.Module, device: torch.device, ctx: DistContext) -> nn.Module:
    if not ctx.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def checkpointer(run: RunDir, trainer: Trainer, cost: CostMeter,
                 extra: Callable[[], dict[str, Any]] | None = None,
                 info: dict[str, Any] | None = None) -> Callable[[Position], None]:
    """The loop's checkpoint callback: model/optimizer/scheduler, position, cost, RNG."""

    def save(position: Position) -> None:
        started = time.perf_counter()
        state = {**trainer.state_dict(), "position": vars(position).copy(),
                 "cost": cost.state(), **(extra() if extra else {})}
        if isinstance(trainer.task.model, nn.parallel.DistributedDataParallel):
            state["model"] = trainer.task.model.module.state_dict()
        run.save_checkpoint(state)
        run.write_cost(cost, status="running", **(info or {}))
        log.debug("checkpoint at epoch %d step %d (%.2fs)", position.epoch, position.step,
                  time.perf_counter() - started)

    return save


def restore(run: RunDir, trainer: Trainer, resume: bool) -> dict[str, Any] | None:
    """Load the last checkpoint into ``trainer`` when resuming; the raw state or None."""
    if not resume:
        return None
    state = run.load_checkpoint()
    if state is None:
        log.info("--resume: no checkpoint in %s yet, starting from the beginning", run.path)
        return None
    unwrap(trainer.task.model).load_state_dict(state["model"])
    trainer.load_state_dict({**state, "model": unwrap(trainer.task.model).state_dict()})
    position = state["position"]
    log.info("resuming %s at epoch %d, batch %d", run.path, position["epoch"] + 1,
             position["step"])
    return state


def backbone_mode(init: str | None) -> str | None:
    """'moco' / 'supervised' from the run.json (or config.yaml) beside a backbone file."""
    if not init:
        return None
    folder = Path(init).parent
    import json

    import yaml

    if (folder / "run.json").is_file():
        mode = json.loads((folder / "run.json").read_text()).get("mode")
        if mode:
            return str(mode)
    if (folder / "config.yaml").is_file():
        saved = yaml.safe_load((folder / "config.yaml").read_text()) or {}
        return (saved.get("config") or {}).get("mode")
    return None
