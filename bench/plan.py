"""Predicted against measured cost: `condpretrain plan`, then the real runs of its grid.

    python bench/plan.py                  # CPU, quick preset: about 2 minutes on 2 cores
    python bench/plan.py --preset small --pretrain-epochs 0 --finetune-epochs 0 \
        --methods random,domain-classifier --budgets 0.25      # the small preset's schedules
    python bench/plan.py --device cuda --preset small --pool-per-class 2000 \
        --pretrain-epochs 0 --finetune-epochs 0 --threads 8                    # a GPU
    python bench/plan.py --tasks detect --task-length 40    # a detection target (VOC)
    python bench/plan.py --tasks finetune,detect,segment    # three targets, one plan
    python bench/plan.py --tasks finetune,detect,mix        # and a mix of the two

Makes a pool of photo-like JPEGs (4 classes) and a labelled target (2 classes) or a drawn
VOC folder (`--tasks detect`), writes the grid as an experiment file, runs `condpretrain
plan EXP --out OUT`, then `condpretrain run EXP` into OUT (both
as a user would, in their own processes), and prints per cell and stage the predicted
and measured device-hours and the error (predicted - measured) / measured, the totals
with shared work counted once, and the median absolute error over cells and stages.
Every process runs with ``--threads`` compute threads (1 by default): on a machine shared
with other jobs, two threads per process on two cores spend much of their time waiting for
each other, and identical runs then differ by a quarter.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from _util import print_table
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from vocgen import make_voc  # noqa: E402  (the tests' VOC drawer: boxes and masks)

from condpretrain.experiment.results import read_results  # noqa: E402
from condpretrain.plan.record import PLAN_FILE, STAGE_COLUMNS, read_plan  # noqa: E402
from condpretrain.report.plan_table import (  # noqa: E402
    comparisons,
    median_abs_error,
    total_comparisons,
)


def photo(rng: np.random.Generator, tint: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """Smooth colour noise (coarse noise, upscaled) with a class tint: decodes and
    compresses like a photo, not like a flat test pattern."""
    coarse = rng.random((size[1] // 8 + 1, size[0] // 8 + 1, 3)) * 0.6 + tint * 0.4
    image = Image.fromarray((coarse * 255).astype(np.uint8)).resize(size, Image.BILINEAR)
    grain = rng.normal(0, 8, (size[1], size[0], 3))
    return Image.fromarray(np.clip(np.asarray(image) + grain, 0, 255).astype(np.uint8))


def write_images(folder: Path, count: int, tint: np.ndarray, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        photo(rng, tint, (160, 120)).save(folder / f"{i:05d}.jpg", quality=90)


def make_data(root: Path, per_class: int, target_train: int, target_test: int) -> tuple[Path, Path]:
    tints = np.random.default_rng(7).random((4, 3))
    for c, tint in enumerate(tints):
        write_images(root / "pool" / f"class{c}", per_class, tint, seed=c)
    for c, tint in enumerate(tints[:2]):
        write_images(root / "target" / "train" / f"t{c}", target_train, tint, seed=100 + c)
        write_images(root / "target" / "test" / f"t{c}", target_test, tint, seed=200 + c)
    return root / "pool", root / "target"


def cli(threads: int, *args: str) -> float:
    """Run one command as a user would, with ``threads`` compute threads; its wall
    seconds."""
    started = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-m", "condpretrain", *args], capture_output=True,
                          text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"failed: condpretrain {' '.join(args)}\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pool-per-class", type=int, default=150)
    parser.add_argument("--target-train", type=int, default=40, help="per class")
    parser.add_argument("--target-test", type=int, default=20, help="per class")
    parser.add_argument("--methods", default="random,domain-classifier,clustering-min",
                        help="comma-separated, or a YAML list: '[knn@classic, "
                             "\"fuse:random,knn@classic\"]'")
    parser.add_argument("--budgets", default="0.1,0.25")
    parser.add_argument("--resolutions", default="32,16")
    parser.add_argument("--modes", default="supervised")
    parser.add_argument("--pretrain-epochs", type=int, default=6, help="0: the preset's")
    parser.add_argument("--finetune-epochs", type=int, default=6, help="0: the preset's")
    parser.add_argument("--steps", type=int, default=None, help="plan --steps (preset's)")
    parser.add_argument("--threads", type=int, default=1,
                        help="compute threads per process (OMP_NUM_THREADS): on a machine "
                             "shared with other jobs, one thread keeps timings steady")
    parser.add_argument("--tasks", default="finetune",
                        help="the targets, by what trains on each (comma-separated): "
                             "finetune (photo-like classes), detect, segment (a drawn VOC "
                             "folder of --target-train + --target-test images); mix: a "
                             "mixed target of the others too")
    parser.add_argument("--task-length", type=int, default=0,
                        help="detect --iterations or segment --epochs (0: the preset's)")
    parser.add_argument("--voc-size", type=int, default=96, help="a VOC image's side (px)")
    parser.add_argument("--out", default=None, help="keep the experiment folder here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        out = Path(args.out) if args.out else work / "out"
        experiment = experiment_file(args, work)
        (work / "exp.yaml").write_text(yaml.safe_dump(experiment))
        calibration = [f"--steps={args.steps}"] if args.steps else []
        plan_seconds = cli(args.threads, "plan", str(work / "exp.yaml"), "--device",
                           args.device, "--out", str(out), *calibration)
        run_seconds = cli(args.threads, "run", str(work / "exp.yaml"), "--out", str(out),
                          "--no-report")
        report(read_plan(out / PLAN_FILE), read_results(out / "results.csv"), plan_seconds,
               run_seconds)


def experiment_file(args: argparse.Namespace, work: Path) -> dict:
    """The grid as an experiment file: what `plan` prices and `run` then runs."""
    pool, classes = make_data(work / "data", args.pool_per_class, args.target_train,
                              args.target_test)
    tasks = args.tasks.split(",")
    targets: dict[str, object] = {}
    if "finetune" in tasks:
        targets["cars"] = str(classes)
    voc = [task for task in tasks if task in ("detect", "segment")]
    if voc:  # one VOC folder (tests/vocgen.py draws it) serves both tasks
        folder = make_voc(work / "data" / "VOC2007", train=args.target_train,
                          test=args.target_test, size=args.voc_size)
        targets.update({f"voc-{task}": {"path": str(folder), "task": task} for task in voc})
    if "mix" in tasks:  # a mix of the other targets, in equal shares
        targets["mix"] = {"mix": {name: round(1 / len(targets), 4) for name in targets}}
    # a YAML list when a method is a fusion (its parts are separated by commas)
    methods = (yaml.safe_load(args.methods) if args.methods.lstrip().startswith("[")
               else args.methods.split(","))
    sections = {"pretrain": {"epochs": args.pretrain_epochs},
                "finetune": {"epochs": args.finetune_epochs},
                "detect": {"iterations": args.task_length},
                "segment": {"epochs": args.task_length}}
    return {"name": "bench-plan", "preset": args.preset, "pool": [f"pool={pool}"],
            "targets": targets, "methods": methods,
            "budgets": [float(b) for b in args.budgets.split(",")],
            "resolutions": [int(r) for r in args.resolutions.split(",")],
            "modes": args.modes.split(","), "select": {"device": args.device},
            **{name: {**{k: v for k, v in options.items() if v}, "device": args.device}
               for name, options in sections.items() if name in ("pretrain", *tasks)}}


def report(plan: dict, rows: list[dict[str, str]], plan_seconds: float,
           run_seconds: float) -> None:
    found, unplanned = comparisons(plan, rows)
    assert not unplanned, f"{len(unplanned)} results rows have no plan cell"
    print(f"plan: {plan['device']}, calibration {plan['calibration']['seconds']:.0f} s "
          f"(command {plan_seconds:.0f} s); the grid's run: {run_seconds:.0f} s")
    table = [[c.label, c.stage, f"{c.predicted * 3600:.2f}", f"{c.measured * 3600:.2f}",
              f"{c.error * 100:+.0f}"] for c in found]
    print_table("per cell and stage (device-seconds; error = (predicted - measured) / measured)",
                ["cell", "stage", "predicted", "measured", "error %"], table)
    totals = total_comparisons(plan, rows)
    print_table("totals, shared work counted once (device-seconds)",
                ["stage", "predicted", "measured", "error %"],
                [[c.stage, f"{c.predicted * 3600:.2f}", f"{c.measured * 3600:.2f}",
                  f"{c.error * 100:+.0f}"] for c in totals])
    predicted = sum(c.predicted for c in totals)
    measured = sum(c.measured for c in totals)
    by_stage = {stage: median_abs_error([c for c in found if c.stage == stage])
                for stage in STAGE_COLUMNS}
    print(f"\nwhole grid: predicted {predicted * 3600:.1f} s, measured {measured * 3600:.1f} s, "
          f"error {(predicted - measured) / measured * 100:+.1f} %")
    print("median absolute error per stage: " + ", ".join(
        f"{s} {e * 100:.1f} %" for s, e in by_stage.items() if e is not None))
    print(f"median absolute error over cells and stages: {median_abs_error(found) * 100:.1f} % "
          f"(goal: within 15 %)")
    print(json.dumps({"median_abs_error": median_abs_error(found),
                      "stdev_error": statistics.pstdev([c.error for c in found
                                                        if c.error is not None])}))


if __name__ == "__main__":
    main()
