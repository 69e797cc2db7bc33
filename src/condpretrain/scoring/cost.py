"""What a selection costs, the models it shares with other methods included.

A model trained once and cached (the target-trained classifier, the domain classifier)
serves several methods, budgets and runs. Each of them needed it, so each is charged
its training in full, as the paper's cost column charges every method what it needed;
the cached file records what its training cost, so a run that only loads it is charged
the same as the run that trained it. Totals over methods count such a model once, by
its key (see :func:`condpretrain.experiment.results.total_device_hours`).

Device-hours are wall seconds x processes: under torchrun every process holds a device
for the whole run, whatever share of the work it did.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def device_hours(seconds: float, processes: int) -> float:
    """Device-hours of ``seconds`` of wall time on ``processes`` processes (one device each)."""
    return float(seconds) * max(int(processes), 1) / 3600.0


@dataclass(frozen=True)
class SharedModel:
    """A cached model a selection used, and what training it cost when it was trained."""

    key: str  # the cached file's name, less its suffix: one model, one key
    path: str
    seconds: float | None  # None: cached before training costs were recorded
    processes: int
    trained_here: bool  # trained by this run, so its seconds are inside this run's wall time

    @staticmethod
    def of(path: Path, recorded: dict[str, Any] | None, trained_here: bool) -> SharedModel:
        recorded = recorded or {}
        seconds = recorded.get("seconds")
        return SharedModel(path.stem, str(path),
                           float(seconds) if isinstance(seconds, (int, float)) else None,
                           int(recorded.get("processes", 1)), trained_here)

    @property
    def device_hours(self) -> float | None:
        return None if self.seconds is None else device_hours(self.seconds, self.processes)

    def to_json(self) -> dict[str, Any]:
        hours = self.device_hours
        return {"key": self.key, "path": self.path,
                "seconds": None if self.seconds is None else round(self.seconds, 3),
                "processes": self.processes,
                "device_hours": None if hours is None else round(hours, 6),
                "trained_here": self.trained_here}


def selection_cost(total_seconds: float, processes: int, shared: Iterable[SharedModel]
                   ) -> dict[str, Any]:
    """The ``cost`` block of ``selection.json``.

    ``own``: this run's wall time less the training of shared models it did itself;
    ``shared``: every cached model it used, with its recorded training cost, whether this
    run trained it or loaded it; ``seconds`` / ``device_hours``: what the method is
    charged, own + shared (a model of unknown cost is listed and not counted).
    """
    shared = list(shared)
    trained_here = sum(m.seconds or 0.0 for m in shared if m.trained_here)
    own = max(float(total_seconds) - trained_here, 0.0)
    known = [m for m in shared if m.seconds is not None]
    own_hours = device_hours(own, processes)
    return {
        "own_seconds": round(own, 3),
        "processes": processes,
        "own_device_hours": round(own_hours, 6),
        "shared": [m.to_json() for m in shared],
        "seconds": round(own + sum(m.seconds or 0.0 for m in known), 3),
        "device_hours": round(own_hours + sum(m.device_hours or 0.0 for m in known), 6),
    }


__all__ = ["device_hours", "SharedModel", "selection_cost"]
