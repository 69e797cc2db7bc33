"""The run folder: config, per-epoch metrics, cost, result and checkpoints of one run.

Every training command (pre-training, fine-tuning, detection, segmentation) writes the
same layout, so one reader serves the experiment runner and the report::

    RUN/config.yaml      the resolved config (and the inputs: sources, subset, target)
    RUN/metrics.jsonl    one JSON object per metrics line (an epoch, or a period of
                         an iteration-based run)
    RUN/run.json         the cost: wall seconds, device kind/count, device-hours,
                         images processed, estimated FLOPs, status; the image cache's
                         build apart (cache_seconds, cache_device_hours), also
                         included in the totals
    RUN/result.json      the final figures (written once, when the run is done)
    RUN/checkpoint.pt    the last resumable state (model, optimizer, scheduler,
                         sampler position, RNG states, cost so far)

Usage (the API is stable; downstream training reuses it)::

    run = RunDir(out, rank=dist_rank)            # only rank 0 writes anything
    run.prepare(resume)                          # refuses to overwrite a finished run
    run.save_config({"config": asdict(cfg), "sources": [...]})
    cost = CostMeter.start(run.read_cost() if resume else None,
                           device_kind="cpu", device_count=1, flops_per_image=F)
    cost.add_cache(source.build_seconds)         # the image cache this run built
    ...
    run.append_metrics({"epoch": 0, "loss": 1.2, ...})
    cost.add_images(n, flop_factor=3)            # fwd + bwd = 3 x forward FLOPs
    run.save_checkpoint({"model": ..., "cost": cost.state()})
    state = run.load_checkpoint()                # None when there is none
    run.write_cost(cost, status="done"); run.write_result({...})

Writes are atomic (temp file + rename): a kill leaves the old file or the new one.
"""

from __future__ import annotations

import json
import pickle
import random
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from condpretrain import atomic
from condpretrain.errors import CondPretrainError
from condpretrain.log import get_logger

log = get_logger(__name__)

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
COST_FILE = "run.json"
RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoint.pt"
BACKBONE_FILE = "backbone.pt"


@dataclass
class CostMeter:
    """Wall time, device-hours, images and FLOPs of a run, carried across resumes.

    Building an image cache is part of a run's cost (the devices are held meanwhile):
    :meth:`add_cache` counts it in ``wall_seconds`` and ``device_hours`` and apart in
    ``cache_seconds`` / ``cache_device_hours``. A cache an earlier run built costs 0."""

    device_kind: str = "cpu"
    device_count: int = 1
    flops_per_image: int = 0  # forward FLOPs of one image at the training resolution
    # Wall seconds this session's clock did not see: earlier (killed) sessions of this
    # run, and the image caches built before the meter started (also in cache_seconds).
    seconds_before: float = 0.0
    cache_seconds: float = 0.0
    images: int = 0
    flops: float = 0.0
    sessions: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    _started: float = field(default_factory=time.monotonic, repr=False)

    @classmethod
    def start(cls, previous: dict[str, Any] | None, **kwargs: Any) -> CostMeter:
        """A meter for a new session; ``previous`` is a checkpoint's ``cost`` state."""
        meter = cls(**kwargs)
        if previous:
            meter.seconds_before = float(previous.get("wall_seconds", 0.0))
            meter.cache_seconds = float(previous.get("cache_seconds", 0.0))
            meter.images = int(previous.get("images", 0))
            meter.flops = float(previous.get("flops", 0.0))
            meter.sessions = int(previous.get("sessions", 0)) + 1
            meter.extra = dict(previous.get("extra", {}))
        return meter

    def add_images(self, count: int, flop_factor: float = 3.0) -> None:
        """``count`` images went through the model; ``flop_factor`` x forward FLOPs each
        (3 for a training step: forward + backward is about twice the forward)."""
        self.images += int(count)
        self.flops += float(count) * flop_factor * self.flops_per_image

    def add_cache(self, seconds: float) -> None:
        """``seconds`` of this session went into building image caches, before the meter
        started: counted in the wall time and apart."""
        self.cache_seconds += float(seconds)
        self.seconds_before += float(seconds)

    def add_flops(self, count: int, flop_factor: float) -> None:
        """FLOPs of images that are not counted as processed (e.g. evaluation)."""
        self.flops += float(count) * flop_factor * self.flops_per_image

    @property
    def wall_seconds(self) -> float:
        return self.seconds_before + time.monotonic() - self._started

    def state(self) -> dict[str, Any]:
        wall = self.wall_seconds
        return {
            "wall_seconds": round(wall, 3),
            "device_kind": self.device_kind,
            "device_count": self.device_count,
            "device_hours": round(wall * self.device_count / 3600.0, 6),
            "cache_seconds": round(self.cache_seconds, 3),
            "cache_device_hours": round(self.cache_seconds * self.device_count / 3600.0, 6),
            "images": self.images,
            "flops": self.flops,
            "flops_per_image": self.flops_per_image,
            "sessions": self.sessions,
            "extra": self.extra,
        }


class RunDir:
    """One run's folder. Only the process with ``rank == 0`` writes; all may read."""

    def __init__(self, path: str | Path, rank: int = 0) -> None:
        self.path = Path(path)
        self.rank = rank

    @property
    def writer(self) -> bool:
        return self.rank == 0

    def file(self, name: str) -> Path:
        return self.path / name

    # -- lifecycle -------------------------------------------------------------------
    def prepare(self, resume: bool) -> None:
        """Create the folder; without ``resume`` refuse to mix with an earlier run."""
        if not resume and (self.file(COST_FILE).exists() or self.file(CHECKPOINT_FILE).exists()):
            raise CondPretrainError(
                f"--out {self.path} already holds a run; pass --resume to continue it "
                "or choose another folder"
            )
        if self.writer:
            self.path.mkdir(parents=True, exist_ok=True)

    def finished(self) -> bool:
        return self.file(RESULT_FILE).is_file()

    # -- config ------------------------------------------------------------------------
    def save_config(self, config: dict[str, Any]) -> None:
        if self.writer:
            atomic.write_text(self.file(CONFIG_FILE), yaml.safe_dump(_plain(config),
                                                                     sort_keys=False))

    def read_config(self) -> dict[str, Any] | None:
        path = self.file(CONFIG_FILE)
        return yaml.safe_load(path.read_text()) if path.is_file() else None

    # -- metrics -----------------------------------------------------------------------
    def append_metrics(self, row: dict[str, Any]) -> None:
        """Add one line. The whole file is rewritten atomically (it is small), and lines
        of epochs at or after ``row['epoch']`` are dropped first, so a resumed run never
        holds an epoch twice."""
        if not self.writer:
            return
        rows = [r for r in self.read_metrics() if r.get("epoch", -1) < row.get("epoch", 1 << 30)]
        rows.append(_plain(row))
        atomic.write_text(self.file(METRICS_FILE), "".join(json.dumps(r) + "\n" for r in rows))

    def read_metrics(self) -> list[dict[str, Any]]:
        path = self.file(METRICS_FILE)
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    # -- cost and result -----------------------------------------------------------------
    def write_cost(self, cost: CostMeter, status: str = "running",
                   **info: Any) -> dict[str, Any]:
        state = {**cost.state(), "status": status, "host": socket.gethostname(), **info}
        if self.writer:
            atomic.write_json(self.file(COST_FILE), _plain(state))
        return state

    def read_cost(self) -> dict[str, Any] | None:
        return atomic.read_json(self.file(COST_FILE), None)

    def write_result(self, result: dict[str, Any]) -> None:
        if self.writer:
            atomic.write_json(self.file(RESULT_FILE), _plain(result))

    def read_result(self) -> dict[str, Any] | None:
        return atomic.read_json(self.file(RESULT_FILE), None)

    # -- checkpoints ---------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any], name: str = CHECKPOINT_FILE) -> None:
        """Atomically save ``state`` plus this process's RNG states. ``state`` must hold
        only what :meth:`load_checkpoint` reads back: tensors, numbers, strings, None,
        lists, tuples and dicts."""
        if self.writer:
            state = {**state, "rng": rng_state()}
            atomic.save_with(self.file(name), lambda handle: torch.save(state, handle))

    def load_checkpoint(self, name: str = CHECKPOINT_FILE,
                        restore_rng: bool = True) -> dict[str, Any] | None:
        """The saved state (RNG states restored into this process), or None.

        Loaded with ``weights_only=True``: a run folder is writable by whoever can write
        there, and ``--resume`` (or ``condpretrain run`` continuing a cell) must never run
        code from a planted file. Anything but a checkpoint is a one-line error."""
        path = self.file(name)
        if not path.is_file():
            return None
        try:
            with warnings.catch_warnings():  # its protocol warnings would only be noise
                warnings.simplefilter("ignore", UserWarning)
                state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:  # weights_only refused it: an object, or garbage
            raise CondPretrainError(
                f"--resume: {path} is not a checkpoint that loads safely (only tensors, "
                "numbers, strings, lists and dicts are read): damaged, planted or from an "
                "older version; not loaded, use another --out") from None
        except Exception as exc:  # a checkpoint is written atomically; this is a bad file
            raise CondPretrainError(f"--resume: {path} is not a readable checkpoint "
                                    f"({type(exc).__name__})") from None
        if not isinstance(state, dict):
            raise CondPretrainError(f"--resume: {path} is not a checkpoint of this tool "
                                    f"(it holds a {type(state).__name__}, not a dict)")
        if restore_rng and "rng" in state:
            try:
                set_rng_state(state["rng"])
            except (KeyError, TypeError, ValueError, RuntimeError, IndexError):
                raise CondPretrainError(f"--resume: {path} holds no valid RNG states; it is "
                                        "not a checkpoint of this tool") from None
        return state


def rng_state() -> dict[str, Any]:
    """This process's RNG states as tensors and plain numbers (what a ``weights_only``
    load accepts: no numpy arrays, no tuples of Python's ``random``)."""
    version, words, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": int(version), "state": torch.tensor(words, dtype=torch.int64),
                   "gauss": gauss},
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(cached)},
        "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    python, numpy = state["python"], state["numpy"]
    random.setstate((int(python["version"]), tuple(python["state"].tolist()), python["gauss"]))
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), int(numpy["pos"]),
                         int(numpy["has_gauss"]), float(numpy["gauss"])))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except (RuntimeError, IndexError):  # resumed on fewer GPUs: keep the fresh states
            log.warning("could not restore CUDA RNG states (different GPUs?)")


def _plain(obj: Any) -> Any:
    """JSON/YAML-safe copy: paths to str, numpy scalars to Python, tuples to lists."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


__all__ = ["RunDir", "CostMeter", "rng_state", "set_rng_state", "CONFIG_FILE", "METRICS_FILE",
           "COST_FILE", "RESULT_FILE", "CHECKPOINT_FILE", "BACKBONE_FILE"]
