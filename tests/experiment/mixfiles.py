"""Shared by the mixed-target tests: a pipeline whose selections are real folders with
made-up scores that each target ranks its own way, and the experiment file as written."""

from __future__ import annotations

import csv
import zlib
from pathlib import Path

import numpy as np
import yaml
from expfiles import write_scored
from fake_steps import FakePipeline

from condpretrain import atomic
from condpretrain.config import to_dict
from condpretrain.config.select import fused_methods
from condpretrain.data.sources import open_pool
from condpretrain.experiment import Steps
from condpretrain.multi_target import merge_selections
from condpretrain.registry import SCORERS
from condpretrain.selection import reselect, select

A, B = SCORERS.names()[:2]  # two registered methods; which ones does not matter here
FUSION = f"fuse:{A},{B}"
MIX = "cars+birds"
SHARES = {"cars": 0.7, "birds": 0.3}
OWN_SECONDS = 360.0
POOL_SIZE = 96  # conftest's two_part_pool: four classes of 24


class MixPipeline(FakePipeline):
    """select writes a real selection folder (pool.csv, scores.npy, a cost block) whose
    made-up scores put the pool part the target prefers first (cars: stripes, birds:
    noise), so the parts' tops never overlap; a fusion, re-selection and merge are the
    real ones. Counts scorings by (target, method) and records what each run was given."""

    def __init__(self, prefer: dict[str, str]) -> None:
        super().__init__()
        self.prefer = prefer  # target folder -> the pool part its scores put first
        self.subsets: list[str | None] = []  # what each pre-training was given
        self.finetuned: dict[str, str] = {}  # fine-tune folder -> its optimizer

    def steps(self) -> Steps:
        return Steps(self.select, self.reselect, self.pretrain, self.finetune, self.merge,
                     self.downstream)

    def select(self, sources, target, out, config):
        out = Path(out)
        self.calls[("select", out.parts[-4], config.method)] += 1  # select/T/METHOD/seedS
        if fused_methods(config.method):
            return select(sources, target, out, config)
        pool = open_pool(sources)
        scores = np.array([zlib.crc32(f"{config.method}{p}".encode()) % 100
                           + (1000 if self.prefer[target] in p else 0) for p in pool.paths],
                          dtype=np.float32)
        write_scored(out, pool, scores)
        atomic.write_json(out / "selection.json", {
            "method": config.method, "parameters": to_dict(config), "seed": config.seed,
            "target": target, "pool_size": len(pool), "selected": 3,
            "timings": {"total": OWN_SECONDS},
            "cost": {"own_seconds": OWN_SECONDS, "processes": 1, "shared": [],
                     "own_device_hours": OWN_SECONDS / 3600, "seconds": OWN_SECONDS,
                     "device_hours": OWN_SECONDS / 3600}})
        return None

    def reselect(self, scores_dir, out, fraction=None, count=None):
        self.calls["reselect"] += 1
        return reselect(scores_dir, out, fraction=fraction, count=count)

    def merge(self, *args, **kwargs):
        self.calls["merge"] += 1
        return merge_selections(*args, **kwargs)

    def pretrain(self, sources, out, config, subset=None, resume=False):
        self.subsets.append(subset)
        return super().pretrain(sources, out, config, subset=subset, resume=resume)

    def finetune(self, target, out, config, resume=False):
        self.finetuned[str(out)] = config.optimizer
        return super().finetune(target, out, config, resume=resume)


def write_yaml(path: Path, data: dict) -> Path:
    """The file in the order written: a mix's parts keep theirs (cars, then birds)."""
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def subset_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))
