"""Several targets, one subset: ``select --target cars=... --target birds=... --mix 0.5,0.5``.

Each target is selected for on its own first, by the ordinary :func:`~condpretrain.selection.select`
into ``OUT/targets/NAME`` (its scores saved there, re-usable with ``select --scores``). Then
the budget is shared out:

1. the budget is split by ``--mix`` (equal shares by default) into whole quotas;
2. round-robin, each target takes its ranking top-first until it has gone through its quota;
   an image another target already took counts for both (the *overlap*) and adds nothing;
3. the budget the overlap freed goes on down the rankings, round-robin, one new image per
   target per turn, until the budget is filled (or every ranking is spent).

A target's *take* is the top of its ranking it went through; ``subset.csv``'s ``targets``
column names every target whose take holds the image, ``taken_by`` the one that added it
(whose score the ``score`` column is: scores of different targets are not comparable).
Outputs in OUT: ``pool.csv`` (the first target's), ``subset.csv`` and ``selection.json``
with each target's share asked, images taken, share of the subset within its take, and
the pairwise overlap (Jaccard) of the targets' own quota-sized tops.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from condpretrain import atomic, eval_duplicates, runlock
from condpretrain.config import SelectConfig, to_dict
from condpretrain.config.select import fused_methods
from condpretrain.data.sources import ImageIndex, parse_spec, write_index_csv
from condpretrain.dist import is_main_process
from condpretrain.errors import CondPretrainError
from condpretrain.log import get_logger
from condpretrain.policies import best_first, eligible_indices
from condpretrain.selection import (
    POOL_CSV,
    SELECTION_JSON,
    SUBSET_CSV,
    SelectionResult,
    budget_size,
    read_selection,
    select,
)
from condpretrain.version import library_versions

log = get_logger(__name__)

TARGETS_DIR = "targets"
MIX_TOLERANCE = 1e-6
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass
class Merge:
    """The shared subset: pool indices in the order taken, and what each target did."""

    chosen: list[int] = field(default_factory=list)
    taken_by: list[int] = field(default_factory=list)  # target index per chosen image
    depth: list[int] = field(default_factory=list)  # how far down its ranking each went


def target_names(specs: list[str]) -> dict[str, str]:
    """``NAME=PATH`` specs by name; names must differ and make plain folder names."""
    named: dict[str, str] = {}
    for spec in specs:
        name = parse_spec(spec)[0]
        check_name(name, spec)
        if name in named:
            raise CondPretrainError(f"--target: two targets are named {name!r}; "
                                    "name them apart with NAME=PATH")
        named[name] = spec
    return named


def check_name(name: str, spec: str) -> None:
    """A target's name names its folder, OUT/targets/NAME."""
    if not _SAFE_NAME.fullmatch(name):
        raise CondPretrainError(f"--target {spec}: name {name!r} cannot be a folder name; "
                                "use NAME=PATH with letters, digits, '.', '_' or '-'")


def parse_mix(text: str | None, count: int) -> list[float]:
    """``--mix 0.75,0.25`` -> one share per target, in (0, 1] and summing to 1."""
    if text is None:
        return [1.0 / count] * count
    try:
        shares = [float(part) for part in text.replace(",", " ").split()]
    except ValueError:
        raise CondPretrainError(f"--mix: expected numbers like 0.5,0.5, got {text!r}") from None
    return check_mix(shares, count)


def check_mix(shares: list[float], count: int) -> list[float]:
    if len(shares) != count:
        raise CondPretrainError(f"--mix: give one share per target ({count}), got {len(shares)}")
    if not all(math.isfinite(s) and 0 < s <= 1 for s in shares):
        raise CondPretrainError(f"--mix: every share must be in (0, 1], got {shares}")
    if abs(sum(shares) - 1) > MIX_TOLERANCE:
        raise CondPretrainError(f"--mix: the shares must sum to 1, got {sum(shares):g}")
    return list(shares)


def quotas(budget: int, shares: list[float]) -> list[int]:
    """Whole numbers of images summing to ``budget``, by largest remainder (ties: the
    earlier target), so 19 images at 0.75/0.25 are 14 and 5."""
    exact = [budget * s for s in shares]
    whole = [math.floor(x) for x in exact]
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - whole[i]), i))
    for i in order[:budget - sum(whole)]:
        whole[i] += 1
    return whole


def merge_rankings(rankings: list[np.ndarray], quota: list[int], budget: int) -> Merge:
    """Share ``budget`` among rankings (pool indices, best first): quotas first, then
    the budget the overlap freed, round-robin; see the module's docstring."""
    merge = Merge(depth=[0] * len(rankings))
    taken: set[int] = set()

    def advance(t: int) -> bool:  # one step down ranking t; True when it added an image
        index = int(rankings[t][merge.depth[t]])
        merge.depth[t] += 1
        if index in taken:
            return False
        taken.add(index)
        merge.chosen.append(index)
        merge.taken_by.append(t)
        return True

    limits = [min(q, len(r)) for q, r in zip(quota, rankings, strict=True)]
    while any(merge.depth[t] < limits[t] for t in range(len(rankings))):
        for t in range(len(rankings)):
            if merge.depth[t] < limits[t]:
                advance(t)
    while len(merge.chosen) < budget:
        moved = False
        for t in range(len(rankings)):
            while len(merge.chosen) < budget and merge.depth[t] < len(rankings[t]):
                moved = True
                if advance(t):
                    break
        if not moved:
            log.warning("every target's ranking is spent: %d images, not %d",
                        len(merge.chosen), budget)
            break
    return merge


def select_multi(sources: list[str] | str, targets: dict[str, str], out: str | Path,
                 config: SelectConfig | None = None,
                 mix: list[float] | None = None) -> SelectionResult:
    """One subset serving every target in ``targets`` (name -> target spec), the budget
    split by ``mix`` (equal shares when None). Each target's own selection is kept in
    ``OUT/targets/NAME``."""
    config = config or SelectConfig()
    config.validate()
    names = list(targets)
    if len(names) < 2:
        raise CondPretrainError("--target: several targets share a subset; give two or more")
    for name, spec in targets.items():
        check_name(name, spec)
    shares = check_mix(mix, len(names)) if mix is not None else parse_mix(None, len(names))
    if fused_methods(config.method):
        raise CondPretrainError(f"--method {config.method}: a fusion reads one target's saved "
                                "scores; select each target on its own to fuse")
    if config.policy != "top":
        raise CondPretrainError(f"--policy {config.policy}: several targets take their "
                                "shares top-first; use --policy top")
    out = Path(out)
    started = time.perf_counter()
    with runlock.hold(out):
        for name in names:
            log.info("target %s: selecting on its own -> %s", name, out / TARGETS_DIR / name)
            select(sources, targets[name], out / TARGETS_DIR / name, config)
        if not is_main_process():  # rank 0 merges; the others only helped score
            return SelectionResult(out, out / SUBSET_CSV, 0, 0, time.perf_counter() - started)
        # the lock is held already: the merge itself, not merge_selections
        return _merge({name: out / TARGETS_DIR / name for name in names}, shares, out, config,
                      sources, targets, "--target", started)


def merge_selections(folders: dict[str, Path], shares: list[float], out: str | Path,
                     config: SelectConfig, sources: list[str] | str,
                     targets: dict[str, str], option: str = "--target",
                     started: float | None = None) -> SelectionResult:
    """One subset into ``out`` from finished selections of one pool, ``folders`` (target
    name -> a select folder holding its scores), the budget (``config``'s) split by
    ``shares``; see the module's docstring. ``targets`` (name -> spec) goes into the
    record; ``option`` is what errors name. Nothing is scored: the experiment grid merges
    its targets' own saved scores with it."""
    out = Path(out)
    started = time.perf_counter() if started is None else started
    with runlock.hold(out, option=option):
        return _merge(folders, shares, out, config, sources, targets, option, started)


def _merge(folders: dict[str, Path], shares: list[float], out: Path, config: SelectConfig,
           sources: list[str] | str, targets: dict[str, str], option: str,
           started: float) -> SelectionResult:
    names = list(folders)
    paths = list(folders.values())
    records, pools, scores = zip(*(read_selection(f, option) for f in paths), strict=True)
    pool: ImageIndex = pools[0]
    for name, other in zip(names[1:], pools[1:], strict=True):
        if other.paths != pool.paths:
            raise CondPretrainError(f"{option} {name}: scored another pool than {names[0]}")
    # A copy of any target's evaluation images stays out for every target: the subset
    # pre-trains a model that each of them is then evaluated on.
    exclude = _excluded_for_all(paths, pool, records, config)
    rankings = [best_first(s, eligible_indices(s, exclude), config.seed) for s in scores]
    budget = budget_size(len(pool), config.fraction, config.count)
    quota = quotas(budget, shares)
    merge = merge_rankings(rankings, quota, budget)
    takes = [set(r[:d].tolist()) for r, d in zip(rankings, merge.depth, strict=True)]
    tops = [set(r[:q].tolist()) for r, q in zip(rankings, quota, strict=True)]
    # the targets whose take holds each chosen image
    holders = [[n for n, take in zip(names, takes, strict=True) if i in take]
               for i in merge.chosen]
    with atomic.OutputSet(out, SELECTION_JSON) as outputs:
        atomic.link_or_copy(paths[0] / POOL_CSV, outputs.path(POOL_CSV))
        _write_subset(outputs.path(SUBSET_CSV), pool, scores, merge, names, holders)
        atomic.write_json(outputs.path(SELECTION_JSON), {
            "method": config.method, "parameters": to_dict(config), "seed": config.seed,
            "policy": {"name": "top", "targets": "shares of the budget by --mix, overlap "
                       "refilled round-robin"},
            "sources": [sources] if isinstance(sources, str) else list(sources),
            "target": None, "targets": dict(targets),
            "pool_size": len(pool), "budget": budget, "selected": len(merge.chosen),
            "in_several_takes": sum(len(h) > 1 for h in holders),
            "per_target": _per_target(names, paths, out, shares, quota, merge, takes),
            "overlap": _overlap(names, tops),
            "timings": {"total": round(time.perf_counter() - started, 3)},
            "versions": library_versions(),
        })
    log.info("selected %d of %d pool images for %d targets -> %s", len(merge.chosen),
             len(pool), len(names), out / SUBSET_CSV)
    return SelectionResult(out, out / SUBSET_CSV, len(merge.chosen), len(pool),
                           time.perf_counter() - started)


def _excluded_for_all(folders: list[Path], pool: ImageIndex, records: tuple[Any, ...],
                      config: SelectConfig) -> np.ndarray | None:
    found = [eval_duplicates.excluded(
        eval_duplicates.load(folder, pool, record.get("eval_duplicates")), config)
        for folder, record in zip(folders, records, strict=True)]
    found = [f for f in found if f is not None and len(f)]
    return np.unique(np.concatenate(found)).astype(np.int64) if found else None


def _write_subset(path: Path, pool: ImageIndex, scores: tuple[np.ndarray, ...], merge: Merge,
                  names: list[str], holders: list[list[str]]) -> None:
    chosen = np.asarray(merge.chosen, dtype=np.int64)
    owner_scores = np.array([scores[t][i] for i, t in zip(merge.chosen, merge.taken_by,
                                                          strict=True)], dtype=np.float32)
    write_index_csv(path, pool.take(chosen), score=owner_scores,
                    rank=np.arange(1, len(chosen) + 1),
                    targets=np.array([";".join(h) for h in holders]),
                    taken_by=np.array([names[t] for t in merge.taken_by]))


def _per_target(names: list[str], folders: list[Path], out: Path, shares: list[float],
                quota: list[int], merge: Merge, takes: list[set[int]]) -> dict[str, Any]:
    selected = max(1, len(merge.chosen))
    return {name: {
        # inside OUT (select --target), else as given (the experiment grid's own folders)
        "folder": str(folder.relative_to(out) if folder.is_relative_to(out) else folder),
        "share_asked": shares[t],
        "quota": quota[t],
        "taken": merge.taken_by.count(t),  # images this target added
        "in_take": len(takes[t]),  # subset images within its take, overlap counted for all
        "subset_share": round(len(takes[t]) / selected, 6),
    } for t, (name, folder) in enumerate(zip(names, folders, strict=True))}


def _overlap(names: list[str], tops: list[set[int]]) -> list[dict[str, Any]]:
    """Jaccard of each pair of targets' own quota-sized tops (before any refill)."""
    pairs = []
    for (a, top_a), (b, top_b) in itertools.combinations(zip(names, tops, strict=True), 2):
        union = len(top_a | top_b)
        shared = len(top_a & top_b)
        pairs.append({"targets": [a, b], "shared": shared,
                      "jaccard": round(shared / union, 6) if union else 0.0})
    return pairs
