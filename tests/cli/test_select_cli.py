"""The select command end to end, as a user runs it (a subprocess, python -m)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from PIL import Image


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "condpretrain", *args],
                          capture_output=True, text=True, timeout=300)


def test_methods_lists_every_registered_method():
    from condpretrain.registry import SCORERS

    result = cli("methods")
    assert result.returncode == 0
    assert len(result.stdout.strip().splitlines()) == len(SCORERS) == 8  # six of the paper


def test_select_end_to_end_with_broken_files(two_part_pool, stripes_target, tmp_path):
    extra = tmp_path / "extra" / "junk"
    extra.mkdir(parents=True)
    (extra / "broken.png").write_bytes(b"not a png")
    Image.new("RGB", (64, 64)).save(extra / "big.png")
    out = tmp_path / "out"
    result = cli("select", "--source", str(two_part_pool), "--source", f"extra={tmp_path / 'extra'}",
                 "--target", str(stripes_target), "--method", "domain-classifier",
                 "--fraction", "0.25", "--out", str(out), "--preset", "quick", "--device", "cpu",
                 "--max-image-pixels", "2000")
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "selection.json").read_text())
    assert meta["pool_size"] == 98 and meta["selected"] == 24  # round(0.25 x 98)
    assert sorted(Path(s["path"]).name for s in meta["skipped"]) == ["big.png", "broken.png"]
    with open(out / "subset.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["path", "label", "pool", "score", "rank"]
    assert [int(r["rank"]) for r in rows] == list(range(1, 25))
    assert all(r["label"].startswith("stripes") for r in rows)

    again = cli("select", "--scores", str(out), "--count", "3", "--out", str(tmp_path / "small"))
    assert again.returncode == 0, again.stderr
    assert len((tmp_path / "small" / "subset.csv").read_text().splitlines()) == 4


def test_config_yaml_and_flags(two_part_pool, stripes_target, tmp_path):
    config = tmp_path / "select.yaml"
    config.write_text("method: random\ncount: 4\nseed: 5\n")
    result = cli("select", "--source", str(two_part_pool), "--target", str(stripes_target),
                 "--config", str(config), "--count", "6", "--out", str(tmp_path / "o"),
                 "--preset", "quick")
    assert result.returncode == 0, result.stderr
    meta = json.loads((tmp_path / "o" / "selection.json").read_text())
    assert meta["method"] == "random" and meta["selected"] == 6 and meta["seed"] == 5


def test_bad_inputs_are_one_line_errors(two_part_pool, stripes_target, tmp_path):
    cases = [
        (["--source", str(tmp_path / "nope"), "--target", str(stripes_target)], "no such file"),
        (["--source", str(two_part_pool), "--target", str(stripes_target), "--fraction", "1.5"],
         "--fraction must be in (0, 1]"),
        (["--source", str(two_part_pool), "--target", str(stripes_target), "--count", "3",
          "--features-from", str(tmp_path / "none.pt"), "--method", "clustering-avg"],
         "--features-from: no such checkpoint"),
        (["--source", str(two_part_pool), "--target", str(stripes_target), "--count", "3",
          "--method", "domain-classifier", "--device", "cpu", "--decode", "gpu"],
         "--decode gpu: scoring runs on cpu, not CUDA"),
    ]
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("methd: random\n")
    cases.append((["--source", str(two_part_pool), "--count", "3", "--config", str(bad_yaml)],
                  "unknown option 'methd'"))
    for args, message in cases:
        result = cli("select", *args, "--out", str(tmp_path / "o"), "--preset", "quick")
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
