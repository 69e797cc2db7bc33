"""Selection quality: how much of each method's budget comes from the pool part related to the target.

Builds, under --out, a pool of five visually distinct kinds of 24 px images made from what
ships in installed packages (nothing is downloaded):

  digits      the ten digits typeset and scanned as scikit-learn's digits look (demo)
  characters  letters, symbols, Greek letters in the same fonts (demo)
  photos      crops of the photographs in scikit-learn and matplotlib (demo)
  shapes      filled shapes and patterns on noisy colour backgrounds (demo)
  textures    smooth random fields through matplotlib colour maps (this bench only)

and three targets whose related pool part is known by construction:

  digits-handwritten  scikit-learn's handwritten digit scans          -> related: digits
  shapes-outline      dark shape outlines on white, another style      -> related: shapes
  flower-closeups     tight, colour-jittered crops of flower.jpg only  -> related: photos

For every target it runs ``select`` with every registered method at the smaller budget
(the paper's; the embedding ones, knn and density-ratio, once per ``--features`` source:
by default the ``classic`` descriptor, it without its colour block and the
target-trained model), re-draws the larger budget from the saved scores, and fuses
knn on the first two features (a colour view and a colour-free one; knn + density-ratio
when one is given) by reciprocal rank (the same fusion for every target: what a user
unsure of the target would default to). It prints the share (%) of each budget drawn
from the related part, the seconds each selection is charged (its own time plus the
cached models and embeddings it used, so the order the methods run in does not matter),
and whether the
two goals hold, computed for every target and every data seed (the whole data set is
drawn anew per seed; the table shows the median and range over seeds):

  1. the best new method beats the best paper method on every target (and budget);
  2. fuse is within --fuse-tolerance points of the best single method on every target.

Every method runs with the chosen preset's settings, the same for every target
(``--set OPTION=VALUE`` changes one select option for every method alike); what the
classic descriptor and the fusion owe to this bench is in the README.
CPU defaults (quick preset, ~1,200 pool images, three data seeds) take ~5 minutes on 2
cores. Larger, e.g. on a GPU machine:
    python bench/selection_quality.py --device cuda --preset small --pool-images 12000 \
        --target-per-class 100 --image-size 32
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

sys.path.insert(0, str(Path(__file__).parent))
from _util import print_table  # noqa: E402

import condpretrain as cp  # noqa: E402
import condpretrain.scoring  # noqa: E402,F401  (fills the SCORERS registry)
from condpretrain import atomic  # noqa: E402
from condpretrain.demo.data import pool_kinds, write_digits_target  # noqa: E402
from condpretrain.demo.pictures import photo_files  # noqa: E402
from condpretrain.registry import SCORERS  # noqa: E402

# Shares of the pool per kind: the three related parts are small, as a target's kind is
# a small part of ImageNet; the two distractor kinds fill the rest.
POOL_SHARES = {"digits": 0.10, "photos": 0.10, "shapes": 0.10,
               "characters": 0.35, "textures": 0.35}
TEXTURE_MAPS = ("viridis", "magma", "terrain", "ocean", "coolwarm", "twilight",
                "cubehelix", "gist_earth")
OUTLINES = {"circle": 0, "triangle": 3, "square": 4, "diamond": 4, "hexagon": 6, "star": 10}
FLOWER_GRID = (3, 3)
# The fusion, the same for every target: knn on the first two --features (by default
# the classic descriptor, its blocks weighted per target, and its colour-free view), or
# with one --features, knn and density-ratio on it.
FUSED_VIEWS_METHOD = "knn"
FUSED_ONE_VIEW = ("knn", "density-ratio")
RELATED = {"digits-handwritten": "digits", "shapes-outline": "shapes",
           "flower-closeups": "photos"}

Draw = Callable[[str, int, np.random.Generator], Image.Image]


# --- data ------------------------------------------------------------------------------

def render_texture(cmap_name: str, size: int, rng: np.random.Generator) -> Image.Image:
    """A smooth random field (a coarse noise grid, upsampled bicubically) in a colour map."""
    from matplotlib import colormaps

    grid = int(rng.integers(3, 9))
    coarse = Image.fromarray(rng.normal(size=(grid, grid)).astype(np.float32), "F")
    field = np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC))
    field = (field - field.min()) / max(float(np.ptp(field)), 1e-6)
    rgb = colormaps[cmap_name](field)[..., :3] * 255 + rng.normal(0, 6, (size, size, 1))
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def render_outline(shape: str, size: int, rng: np.random.Generator) -> Image.Image:
    """A dark outline of ``shape`` on white: unlike the pool's filled, noisy shapes."""
    canvas = size * 4  # drawn large, then downsized for smooth strokes
    image = Image.new("RGB", (canvas, canvas), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    ink = tuple(int(v) for v in rng.integers(0, 80, 3))
    width = int(rng.integers(canvas // 24, canvas // 10))
    r = canvas * rng.uniform(0.25, 0.4)
    cx, cy = canvas / 2 + rng.uniform(-0.08, 0.08, 2) * canvas
    corners = OUTLINES[shape]
    if corners == 0:
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=ink, width=width)
    else:
        angle = np.pi / 4 if shape == "square" else float(rng.uniform(0, 2 * np.pi))
        radii = [r * (0.45 if shape == "star" and k % 2 else 1.0) for k in range(corners)]
        points = [(cx + radii[k] * np.cos(angle + 2 * np.pi * k / corners),
                   cy + radii[k] * np.sin(angle + 2 * np.pi * k / corners))
                  for k in range(corners)]
        draw.polygon(points, outline=ink, width=width)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def render_closeup(region: str, size: int, rng: np.random.Generator) -> Image.Image:
    """A tight crop of one region of flower.jpg, with brightness and saturation jitter."""
    with Image.open(photo_files()["flower"]) as opened:
        photo = opened.convert("RGB")
    row, col = (int(v) for v in region.split("-")[1])
    rows, cols = FLOWER_GRID
    cell_w, cell_h = photo.width / cols, photo.height / rows
    side = rng.uniform(0.2, 0.45) * min(cell_w, cell_h)
    left = min(max((col + rng.uniform(0.2, 0.8)) * cell_w - side / 2, 0), photo.width - side)
    top = min(max((row + rng.uniform(0.2, 0.8)) * cell_h - side / 2, 0), photo.height - side)
    crop = photo.resize((size, size), Image.Resampling.BILINEAR,
                        box=(left, top, left + side, top + side))
    crop = ImageEnhance.Brightness(crop).enhance(rng.uniform(0.8, 1.2))
    return ImageEnhance.Color(crop).enhance(rng.uniform(0.7, 1.3))


def pool_draws() -> dict[str, tuple[list[str], Draw]]:
    """Kind -> (classes, draw(class, size, rng)): the demo's four and the textures."""
    kinds = {k.name: (k.classes, k.draw) for k in pool_kinds()}
    kinds["textures"] = (list(TEXTURE_MAPS), render_texture)
    return kinds


def write_images(folder: Path, classes: list[str], per_class: int, draw: Draw, size: int,
                 seed: list[int]) -> None:
    for c, cls in enumerate(classes):
        rng = np.random.default_rng([*seed, c])
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw(cls, size, rng).save(folder / cls / f"{i:04d}.png")


def make_data(data: Path, pool_images: int, per_class: int, size: int, seed: int) -> tuple[
        dict[str, Path], dict[str, Path]]:
    """Write (or reuse, when made with the same settings) the pool and the targets; ``seed``
    draws every image (another seed: other crops, glyph placements, digit scans...)."""
    pool_dirs = {kind: data / "pool" / kind for kind in POOL_SHARES}
    target_dirs = {name: data / "targets" / name for name in RELATED}
    stamp = data / "made.json"
    settings = {"pool_images": pool_images, "per_class": per_class, "size": size, "seed": seed}
    if atomic.read_json(stamp, default=None) == settings:
        return pool_dirs, target_dirs
    shutil.rmtree(data, ignore_errors=True)  # only ever what this function wrote
    for k, (kind, (classes, draw)) in enumerate(pool_draws().items()):
        count = max(1, round(pool_images * POOL_SHARES[kind] / len(classes)))
        write_images(pool_dirs[kind], classes, count, draw, size, [seed, k])
    write_digits_target(target_dirs["digits-handwritten"], per_class, 0, size, seed=seed)
    shutil.rmtree(target_dirs["digits-handwritten"] / "test", ignore_errors=True)
    write_images(target_dirs["shapes-outline"] / "train", list(OUTLINES), per_class,
                 lambda cls, s, rng: render_outline(cls, s, rng), size, [1, seed])
    regions = [f"region-{r}{c}" for r in range(FLOWER_GRID[0]) for c in range(FLOWER_GRID[1])]
    write_images(target_dirs["flower-closeups"] / "train", regions, per_class,
                 render_closeup, size, [2, seed])
    atomic.write_json(stamp, settings)  # last: a half-made data folder is never reused
    return pool_dirs, target_dirs


# --- selections ------------------------------------------------------------------------

@dataclass
class Outcome:
    """One method on one target: the related share (%) of each budget, charged seconds."""

    method: str
    shares: dict[float, float]
    seconds: float


def related_share(selection: Path, related: str) -> float:
    with open(selection / "subset.csv", newline="", encoding="utf-8") as handle:
        pools = [row["pool"] for row in csv.DictReader(handle)]
    return 100.0 * sum(p == related for p in pools) / max(len(pools), 1)


def charged_seconds(selection: Path) -> float:
    return float(atomic.read_json(selection / "selection.json")["cost"]["seconds"])


def run_target(sources: list[str], target: Path, runs: Path, related: str,
               methods: list[str], budgets: tuple[float, float],
               settings: dict[str, object]) -> list[Outcome]:
    """Every method, then the fusion, on one target; both budgets each. An embedding
    method runs once per --features source, named METHOD@SOURCE."""
    small, large = budgets
    features = list(settings["features"])  # type: ignore[call-overload]
    runs_of: list[tuple[str, str, dict[str, object]]] = []
    for method in methods:
        if method in settings["embedding"]:  # type: ignore[operator]
            runs_of += [(f"{method}@{f}", method, {"features": f}) for f in features]
        else:
            runs_of.append((method, method, {}))
    fused = fused_parts(features)
    runs_of.append(("fuse:" + ",".join(fused), "fuse:" + ",".join(fused),
                    {"fuse_from": ",".join(str(runs / folder_name(m)) for m in fused)}))
    outcomes = []
    for shown, method, extra in runs_of:
        folder = runs / folder_name(shown)
        config = cp.build_config(cp.SelectConfig, str(settings["preset"]), method=method,
                                 fraction=small, device=settings["device"],
                                 seed=settings["seed"], cache_dir=str(runs / "cache"),
                                 **{**settings["options"], **extra})  # type: ignore[dict-item]
        cp.select(sources, str(target), folder, config)
        cp.reselect(folder, folder.with_name(folder.name + "@large"), fraction=large)
        outcomes.append(Outcome(shown, {
            small: related_share(folder, related),
            large: related_share(folder.with_name(folder.name + "@large"), related)},
            charged_seconds(folder)))
    return outcomes


def fused_parts(features: list[str]) -> list[str]:
    """The fusion's parts, ``METHOD@FEATURES`` each (see FUSED_VIEWS_METHOD)."""
    if len(features) >= 2:
        return [f"{FUSED_VIEWS_METHOD}@{f}" for f in features[:2]]
    return [f"{m}@{features[0]}" for m in FUSED_ONE_VIEW]


def folder_name(shown: str) -> str:
    return shown.replace(":", "-").replace(",", "+").replace("@", "_")


# --- goals -----------------------------------------------------------------------------

def ceiling(related_count: int, pool_size: int, fraction: float) -> float:
    """The highest share possible: the whole related part, if it fits in the budget."""
    budget = max(1, round(fraction * pool_size))
    return 100.0 * min(1.0, related_count / budget)


def compare(new: float, paper: float, top: float) -> str:
    if new > paper:
        return "beats"
    if new == paper == top:
        return "ties at ceiling"
    return "ties" if new == paper else "loses"


def goal_rows(target: str, outcomes: list[Outcome], paper: list[str], new: list[str],
              budgets: tuple[float, float], ceilings: dict[float, float],
              tolerance: float) -> tuple[list[list[object]], list[str], list[str]]:
    """Summary rows for one target and, per goal, where it failed (empty: it held)."""
    by = {o.method: o for o in outcomes}
    fused = next(o for o in outcomes if o.method.startswith("fuse:"))
    rows, goal1_failed, goal2_failed = [], [], []
    for b in budgets:
        best_paper = max(paper, key=lambda m: by[m].shares[b])
        best_new = max(new, key=lambda m: by[m].shares[b])
        best_any = max([*paper, *new], key=lambda m: by[m].shares[b])
        verdict = compare(by[best_new].shares[b], by[best_paper].shares[b], ceilings[b])
        gap = by[best_any].shares[b] - fused.shares[b]
        if verdict not in ("beats", "ties at ceiling"):
            goal1_failed.append(f"{target}@{b:.0%}")
        if gap > tolerance:
            goal2_failed.append(f"{target}@{b:.0%}")
        rows.append([target, f"{b:.0%}", f"{ceilings[b]:.1f}",
                     f"{best_paper} {by[best_paper].shares[b]:.1f}",
                     f"{best_new} {by[best_new].shares[b]:.1f}", verdict,
                     f"{fused.shares[b]:.1f}", f"{best_any} {by[best_any].shares[b]:.1f}",
                     f"{gap:+.1f}"])
    return rows, goal1_failed, goal2_failed


def verdict_line(goal: str, failed: list[str]) -> str:
    return f"{goal}: {'HOLDS' if not failed else 'FAILS on ' + ', '.join(failed)}"


# --- main ------------------------------------------------------------------------------

@dataclass
class SeedRun:
    """One data seed: every outcome per target, and where each goal failed."""

    outcomes: dict[str, list[Outcome]]
    summary: list[list[object]]
    goal1_failed: list[str]
    goal2_failed: list[str]


def run_seed(args: argparse.Namespace, data_seed: int, features: list[str],
             budgets: tuple[float, float]) -> SeedRun:
    out = Path(args.out) / f"seed{data_seed}"
    pool_dirs, target_dirs = make_data(out / "data", args.pool_images, args.target_per_class,
                                       args.image_size, data_seed)
    sources = [f"{kind}={path}" for kind, path in pool_dirs.items()]
    counts = {kind: sum(1 for _ in path.rglob("*.png")) for kind, path in pool_dirs.items()}
    pool_size = sum(counts.values())
    paper = SCORERS.names(having="in_paper")
    embedding = [m for m in SCORERS.names() if m not in paper]
    new = [f"{m}@{f}" for m in embedding for f in features]
    # Fresh runs every time: reused cached models would make the seconds meaningless.
    shutil.rmtree(out / "runs", ignore_errors=True)
    settings = {"preset": args.preset, "device": args.device, "seed": args.seed,
                "features": features, "embedding": embedding, "options": args.options}
    run = SeedRun({}, [], [], [])
    for target, related in RELATED.items():
        outcomes = run_target(sources, target_dirs[target], out / "runs" / target, related,
                              [*paper, *embedding], budgets, settings)
        ceilings = {b: ceiling(counts[related], pool_size, b) for b in budgets}
        outcomes.append(Outcome("(ceiling)", ceilings, 0.0))
        run.outcomes[target] = outcomes
        goal, failed1, failed2 = goal_rows(target, outcomes, paper, new, budgets, ceilings,
                                           args.fuse_tolerance)
        run.summary += [[data_seed, *row] for row in goal]
        run.goal1_failed += [f"{f} (seed {data_seed})" for f in failed1]
        run.goal2_failed += [f"{f} (seed {data_seed})" for f in failed2]
    return run


def median_rows(runs: list[SeedRun], budgets: tuple[float, float]) -> list[list[object]]:
    """Per target and method: the median share of each budget over the data seeds (and
    its range), and the median seconds charged."""
    paper = set(SCORERS.names(having="in_paper"))
    rows = []
    for target, first in runs[0].outcomes.items():
        for k, outcome in enumerate(first):
            same = [run.outcomes[target][k] for run in runs]
            kind = "paper" if outcome.method in paper else "" if outcome.method == "(ceiling)" \
                else "fuse" if outcome.method.startswith("fuse:") else "new"
            cells = []
            for b in budgets:
                shares = [o.shares[b] for o in same]
                spread = f" ({min(shares):.1f}-{max(shares):.1f})" if len(shares) > 1 else ""
                cells.append(f"{statistics.median(shares):.1f}{spread}")
            seconds = statistics.median(o.seconds for o in same)
            rows.append([target, outcome.method, kind, *cells,
                         round(seconds, 1) if kind else ""])
    return rows


def parse_options(parser: argparse.ArgumentParser, pairs: list[str]) -> dict[str, object]:
    """``--set a=1 --set b=x`` -> {a: 1, b: 'x'}, each read as its SelectConfig field's type."""
    fields = {f.name: f.type for f in dataclasses.fields(cp.SelectConfig)}
    options: dict[str, object] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        name = name.strip().replace("-", "_")
        if name not in fields or not value:
            parser.error(f"--set {pair}: expected OPTION=VALUE with a select option")
        kind = str(fields[name])
        if kind.startswith("bool"):
            options[name] = value.lower() in ("1", "true", "yes", "on")
        else:
            options[name] = (int(value) if kind.startswith("int") else float(value)
                             if kind.startswith("float") else value)
    return options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/condpretrain-selq")
    parser.add_argument("--preset", default="quick", choices=list(cp.SelectConfig.PRESETS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--pool-images", type=int, default=1200)
    parser.add_argument("--target-per-class", type=int, default=30,
                        help="target train images per class")
    parser.add_argument("--image-size", type=int, default=24)
    parser.add_argument("--budgets", default="0.06,0.12", help="two fractions, small first")
    parser.add_argument("--fuse-tolerance", type=float, default=5.0,
                        help="goal 2: points fuse may trail the best single method by")
    parser.add_argument("--seed", type=int, default=0, help="the selections' --seed")
    parser.add_argument("--data-seeds", default="0,1,2",
                        help="comma-separated: the bench's data is drawn once per seed and "
                             "every goal is checked on each")
    parser.add_argument("--features", default="classic,classic:layout+gradients,target",
                        help="features of the embedding methods (knn, density-ratio), "
                             "comma-separated, each run separately; fuse reads the first two: "
                             "classic, target, moco:target, checkpoint:CKPT, "
                             "timm:NAME[@WEIGHTS], npy:PATH")
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                        help="a select option for every method, e.g. --set moco_pool_sample=1200 "
                             "(repeatable; read as the option's type)")
    args = parser.parse_args()
    args.options = parse_options(parser, args.set)
    budgets = tuple(float(b) for b in args.budgets.split(","))
    if len(budgets) != 2 or not 0 < budgets[0] < budgets[1] <= 1:
        parser.error("--budgets: two fractions in (0, 1], small first, e.g. 0.06,0.12")
    features = [f for f in args.features.split(",") if f]
    seeds = [int(s) for s in args.data_seeds.split(",") if s]
    if not features or not seeds:
        parser.error("--features and --data-seeds need at least one value each")

    started = time.perf_counter()
    runs = [run_seed(args, seed, features, budgets) for seed in seeds]
    small, large = (f"{b:.0%}" for b in budgets)
    print(f"\npool: {args.pool_images} images of {args.image_size} px in five kinds "
          f"({', '.join(f'{k} {v:.0%}' for k, v in POOL_SHARES.items())}), drawn anew for each "
          f"data seed ({', '.join(map(str, seeds))}); preset {args.preset}; device "
          f"{args.device}; embedding features {', '.join(features)}; fuse = "
          f"{' + '.join(fused_parts(features))} (reciprocal rank); "
          f"{time.perf_counter() - started:.0f} s in all")
    print_table(f"Share of the budget drawn from the target's related pool part (%), median "
                f"over {len(seeds)} data seed(s) (range); seconds charged (own + cached models "
                "used; fuse: sum of its parts)",
                ["target", "method", "kind", small, large, "seconds"], median_rows(runs, budgets))
    print_table("Per data seed and target: best paper method, best new method, fuse (share %)",
                ["seed", "target", "budget", "ceiling", "best paper", "best new",
                 "new vs paper", "fuse", "best single", "best - fuse"],
                [row for run in runs for row in run.summary])
    print()
    goal1 = [f for run in runs for f in run.goal1_failed]
    goal2 = [f for run in runs for f in run.goal2_failed]
    print(verdict_line("Goal 1, best new method beats best paper method on every target "
                       "and data seed (a tie where both reach the ceiling counts)", goal1))
    print(verdict_line(f"Goal 2, fuse within {args.fuse_tolerance:g} points of the best "
                       "single method on every target and data seed", goal2))


if __name__ == "__main__":
    main()
