"""Shared helpers for the bench scripts: synthetic pools, timing, child peak memory."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image


def make_pool(root: Path, count: int, size: int, classes: int = 10, distinct: int = 500) -> Path:
    """``count`` files in ``classes`` folders; ``distinct`` real JPEGs, the rest hard links.

    Hard links make a 100k-file pool in seconds while every file is still opened,
    decoded and resized by the code under test.
    """
    rng = np.random.default_rng(0)
    originals = root / "_originals"
    originals.mkdir(parents=True, exist_ok=True)
    sources = []
    for i in range(min(distinct, count)):
        path = originals / f"{i}.jpg"
        if not path.exists():
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
        sources.append(path)
    pool = root / f"pool{count}"
    if not pool.exists():
        for i in range(count):
            folder = pool / f"class{i % classes:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            os.link(sources[i % len(sources)], folder / f"{i:07d}.jpg")
    return pool


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run_child(command: list[str]) -> tuple[float, float]:
    """Run ``command``; return (wall seconds, peak RSS in MB) of that process alone."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{process.stderr.read().decode()}")
    return seconds, usage.ru_maxrss / 1024


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    cells = [header] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for i, row in enumerate(cells):
        print("  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(value: object) -> str:
    return f"{value:,.2f}" if isinstance(value, float) else str(value)
