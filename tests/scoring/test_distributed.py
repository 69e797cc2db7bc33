"""torchrun with 2 gloo processes: the merged scores equal the single-process scores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from selectkit import random_backbone


def torchrun(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", "-m", "condpretrain", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


def single(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "condpretrain", *args], capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> Path:
    return random_backbone(tmp_path_factory.mktemp("ckpt"))


@pytest.mark.parametrize("method", ["random", "clustering-min"])
def test_two_processes_match_one(two_part_pool, stripes_target, backbone, tmp_path, method):
    common = ["select", "--source", str(two_part_pool), "--target", str(stripes_target),
              "--method", method, "--fraction", "0.25", "--preset", "quick", "--device", "cpu",
              "--features-from", str(backbone), "--chunk-size", "10"]
    one = single(*common, "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    two = torchrun(*common, "--out", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "one" / "scores.npy"),
                                  np.load(tmp_path / "two" / "scores.npy"))
    assert ((tmp_path / "one" / "subset.csv").read_bytes()
            == (tmp_path / "two" / "subset.csv").read_bytes())
    meta = json.loads((tmp_path / "two" / "selection.json").read_text())
    assert meta["processes"] == 2
    assert not list((tmp_path / "two").glob("partial-*"))  # merged, then cleaned up


def test_domain_classifier_trains_with_ddp(two_part_pool, stripes_target, tmp_path):
    result = torchrun("select", "--source", str(two_part_pool), "--target", str(stripes_target),
                      "--method", "domain-classifier", "--fraction", "0.5", "--preset", "quick",
                      "--device", "cpu", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "subset.csv") as handle:
        labels = [line.split(",")[1] for line in handle.read().splitlines()[1:]]
    assert len(labels) == 48 and all(label.startswith("stripes") for label in labels)
