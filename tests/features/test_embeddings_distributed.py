"""torchrun with 2 gloo processes: the pool embeddings (rank r computes shards r, r+2, ...)
are the one-process embeddings exactly: the same shards holding the same values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from condpretrain.models import build_resnet, save_backbone

# One thread in both runs: the comparison is about how the work is split, not about
# how a thread count changes float reductions.
ENV = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")


def run(*args: str, processes: int) -> subprocess.CompletedProcess:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc-per-node", str(processes)] if processes > 1 else [sys.executable])
    return subprocess.run([*launcher, "-m", "condpretrain", *args], capture_output=True,
                          text=True, timeout=600, env=ENV)


def shards(cache: Path) -> dict[str, np.ndarray]:
    """Every embedding shard under ``cache``, by its name inside its folder."""
    (folder,) = cache.glob("embeddings-*")
    return {path.name: np.load(path) for path in sorted(folder.glob("shard-*.npy"))}


def test_two_processes_embed_the_pool_as_one(two_part_pool, stripes_target, tmp_path):
    torch.manual_seed(0)
    backbone = tmp_path / "backbone.pt"
    save_backbone(build_resnet("resnet10"), backbone)
    common = ["select", "--source", str(two_part_pool), "--target", str(stripes_target),
              "--method", "knn", "--features", f"checkpoint:{backbone}", "--fraction", "0.25",
              "--preset", "quick", "--device", "cpu", "--filter-resolution", "16",
              "--chunk-size", "10", "--batch-size", "8"]
    for name, processes in (("one", 1), ("two", 2)):
        result = run(*common, "--out", str(tmp_path / name),
                     "--cache-dir", str(tmp_path / f"cache-{name}"), processes=processes)
        assert result.returncode == 0, result.stderr[-3000:]
    one, two = shards(tmp_path / "cache-one"), shards(tmp_path / "cache-two")
    assert len(one) == 10  # 96 pool images in shards of 10: both ranks had work
    assert one.keys() == two.keys()
    for name in one:
        assert one[name].dtype == two[name].dtype == np.float16
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)
    assert not np.isnan(np.concatenate(list(one.values()))).any()
    # ...and so the scores read from them
    np.testing.assert_array_equal(np.load(tmp_path / "one" / "scores.npy"),
                                  np.load(tmp_path / "two" / "scores.npy"))
    assert json.loads((tmp_path / "two" / "selection.json").read_text())["processes"] == 2
