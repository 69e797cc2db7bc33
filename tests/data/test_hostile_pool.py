"""select and pretrain over a pool a hostile user prepared: a 1,000,000 x 1 PNG (a few
hundred bytes that a short-side resize would make 150 GB), a ``loop -> .`` link, a file
name that is not UTF-8. Both commands finish, skip and name the long image, list every
other image once and leave out the name they could not write."""

from __future__ import annotations

import csv
import json
import logging
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from imagegen import write_family
from PIL import Image

from condpretrain.config import PretrainConfig
from condpretrain.train.pretrain import pretrain, training_index

GOOD = 16  # images that decode, 8 per class


@pytest.fixture(scope="module")
def hostile_pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pool = tmp_path_factory.mktemp("hostile") / "pool"
    write_family(pool / "a", "stripes", GOOD // 2, size=16)
    noise = write_family(pool / "b", "noise", GOOD // 2, size=16)
    Image.new("L", (1_000_000, 1)).save(pool / "a" / "wide.png")
    (pool / "a" / "loop").symlink_to(".")
    try:
        fd = os.open(os.path.join(os.fsencode(pool / "b"), b"caf\xe9.png"),
                     os.O_CREAT | os.O_WRONLY, 0o644)
    except OSError as exc:
        pytest.skip(f"this file system refuses non-UTF-8 names ({exc})")
    os.write(fd, noise[0].read_bytes())
    os.close(fd)
    return pool


def _limit_memory() -> None:
    # The old code asked for 64 x 64,000,000 x 3 bytes here (12 GB): fail, do not swap.
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))


def test_select_skips_and_names_the_long_image(hostile_pool, stripes_target, tmp_path):
    out = tmp_path / "select"
    result = subprocess.run(
        [sys.executable, "-m", "condpretrain", "select", "--source", str(hostile_pool),
         "--target", str(stripes_target), "--method", "domain-classifier", "--preset", "quick",
         "--dc-epochs", "1", "--filter-resolution", "64", "--count", "4", "--device", "cpu",
         "--out", str(out)],
        capture_output=True, text=True, timeout=600, preexec_fn=_limit_memory)
    assert result.returncode == 0, result.stderr[-3000:]
    meta = json.loads((out / "selection.json").read_text())
    assert meta["pool_size"] == GOOD + 1 and meta["selected"] == 4
    assert [Path(s["path"]).name for s in meta["skipped"]] == ["wide.png"]
    assert "longer than 32:1" in meta["skipped"][0]["reason"]
    with open(out / "pool.csv", encoding="utf-8") as handle:
        listed = [row["path"] for row in csv.DictReader(handle)]
    assert len(listed) == len(set(listed)) == GOOD + 1  # the loop added nothing
    assert not any("caf" in p for p in listed)
    assert "left out names not valid UTF-8: 1, repeated folders" in result.stderr
    assert len(training_index(str(hostile_pool), out / "subset.csv")) == 4


def test_pretrain_skips_and_names_the_long_image(hostile_pool, tmp_path, caplog):
    config = PretrainConfig(**{**PretrainConfig.PRESETS["quick"], "resolution": 16,
                               "epochs": 1, "batch_size": 8, "device": "cpu", "amp": False})
    with caplog.at_level(logging.WARNING, logger="condpretrain"):
        result = pretrain(str(hostile_pool), tmp_path / "run", config)
    assert result.result["images"] == GOOD + 1
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["classes"] == ["a", "b"]
    skipped = [r.getMessage() for r in caplog.records if "skipped, unreadable" in r.getMessage()]
    assert len(skipped) == 1 and "wide.png" in skipped[0] and "32:1" in skipped[0]
