"""Shared by the scoring tests: the quick select config, what a subset picked, hand-made
embeddings and a random backbone."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from condpretrain.config import SelectConfig, build_config
from condpretrain.models import build_resnet, save_backbone


def quick(**overrides) -> SelectConfig:
    return build_config(SelectConfig, "quick", device="cpu", **overrides)


def picked_families(subset_csv: Path) -> Counter:
    """How many images of each family (the label's prefix) a subset holds."""
    with open(subset_csv) as handle:
        return Counter(row["label"].split("_")[0] for row in csv.DictReader(handle))


def two_part_npy(pool_root: Path, target_root: Path, folder: Path, seed: int = 0,
                 axes: tuple[int, int] = (0, 1)) -> Path:
    """Hand-made embeddings of a two-part pool: rows near one axis for its stripes
    part, another for the noise part; the target's rows near the stripes axis, so a
    scorer that reads them must rank stripes first. Returns ``folder/emb.npy``."""
    from condpretrain.data.sources import open_pool, open_target

    rng = np.random.default_rng(seed)
    stripes, noise = (np.eye(8, dtype=np.float32)[axis] for axis in axes)
    centre = np.array([stripes if "/stripes" in p else noise
                       for p in open_pool([str(pool_root)]).paths])
    path = folder / "emb.npy"
    np.save(path, centre + rng.normal(0, 0.1, centre.shape).astype(np.float32))
    n_target = len(open_target(str(target_root)).train)
    np.save(path.with_name("emb.target.npy"),
            stripes + rng.normal(0, 0.1, (n_target, 8)).astype(np.float32))
    return path


def unit_rows(npy: Path) -> tuple[np.ndarray, np.ndarray]:
    """The pool's and the target's rows of :func:`two_part_npy`, float64, unit length."""
    pool = np.load(npy).astype(np.float64)
    target = np.load(npy.with_name("emb.target.npy")).astype(np.float64)
    return (pool / np.linalg.norm(pool, axis=1, keepdims=True),
            target / np.linalg.norm(target, axis=1, keepdims=True))


def random_backbone(folder: Path) -> Path:
    """A resnet10 backbone with seed-0 random weights, saved as ``folder/backbone.pt``."""
    torch.manual_seed(0)
    path = folder / "backbone.pt"
    save_backbone(build_resnet("resnet10"), path)
    return path
