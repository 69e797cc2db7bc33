"""The experiment grid of the paper's Table 2: cells, shared work, a resumable results table.

A grid is targets x selection methods x budgets x pre-training resolutions x modes, plus
the two baselines (random initialisation = 0 %, the entire pool = 100 %), each repeated
over seeds. Every cell runs select -> pretrain -> finetune and adds one row to
``OUT/results.csv``.

Work is shared where the result cannot differ:

* scoring runs once per (target, method, seed); every budget is a re-selection from the
  saved scores (``reselect``), never a second scoring;
* the target-trained model is cached once per target (``SelectConfig.cache_dir``) so
  clustering and (inverse) active learning reuse it;
* the entire-pool pre-training does not depend on the target, so one run per
  (mode, resolution, seed) serves every target;
* a subset pre-training (target, method, budget, resolution, mode, seed) serves only
  its own cell.

Resuming: a cell whose row is already in ``results.csv`` is skipped; an artefact that
finished (scores, a subset, a backbone, a fine-tune) is read back instead of recomputed;
an unfinished training run is continued from its checkpoint (``resume=True``).
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from condpretrain import atomic
from condpretrain.config import (
    PRESET_NAMES,
    FinetuneConfig,
    PretrainConfig,
    SelectConfig,
    build_config,
    config_fields,
)
from condpretrain.errors import CondPretrainError
from condpretrain.log import get_logger, progress_bar

log = get_logger(__name__)

# The paper's order of rows within a budget (Table 2).
METHODS = (
    "random",
    "inverse-active-learning",
    "active-learning",
    "domain-classifier",
    "clustering-avg",
    "clustering-min",
)
MODES = ("supervised", "moco")
RANDOM_INIT = "random-init"
ENTIRE_POOL = "entire-pool"
BASELINES = (RANDOM_INIT, ENTIRE_POOL)
RESULTS_FILE = "results.csv"

# Row identity: one row per cell and seed.
KEY_COLUMNS = ("target", "mode", "resolution", "budget", "method", "seed")
RESULT_COLUMNS = (
    *KEY_COLUMNS,
    "arch", "selected", "pool_size",
    "top1", "top5", "best_top1",  # percent, as result.json has them
    "select_seconds", "select_device_hours",
    "pretrain_seconds", "pretrain_device_hours", "pretrain_images", "pretrain_flops",
    "finetune_seconds", "finetune_device_hours",
    "select_dir", "pretrain_dir", "finetune_dir", "finished_at",
)
# Sections whose keys are options of a config class; a mode name inside a section
# (e.g. ``finetune: {moco: {lr: 0.001}}``) holds overrides for that mode only.
SECTIONS: dict[str, type] = {"select": SelectConfig, "pretrain": PretrainConfig,
                             "finetune": FinetuneConfig}
# Experiment keys that change what a finished cell means (the grid's axes may grow).
SETTINGS_KEYS = ("pool", "targets", "preset", "select", "pretrain", "finetune")
# Options the grid itself sets per cell; giving them in a section would be ignored.
GRID_OWNED = {
    "select": {"method", "fraction", "count", "seed", "cache_dir"},
    "pretrain": {"mode", "resolution", "seed", "init"},
    "finetune": {"init", "seed", "arch"},
}


@dataclass
class ExperimentConfig:
    """One experiment file. Paths are resolved against the file's folder."""

    pool: list[str]
    targets: dict[str, str]
    name: str = "experiment"
    preset: str = "paper"
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    budgets: list[float] = field(default_factory=lambda: [0.06, 0.12])
    resolutions: list[int] = field(default_factory=lambda: [224, 112])
    modes: list[str] = field(default_factory=lambda: ["supervised"])
    seeds: list[int] = field(default_factory=lambda: [0])
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    select: dict[str, Any] = field(default_factory=dict)
    pretrain: dict[str, Any] = field(default_factory=dict)
    finetune: dict[str, Any] = field(default_factory=dict)

    def to_yaml(self) -> str:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        return yaml.safe_dump(data, sort_keys=False)


@dataclass(frozen=True)
class Cell:
    """One row of the results table (before it has numbers)."""

    target: str
    mode: str
    resolution: int  # 0 for random init: nothing is pre-trained
    budget: float  # 0 random init, 1 entire pool, else the selected fraction
    method: str
    seed: int

    @property
    def key(self) -> tuple[str, ...]:
        return (self.target, self.mode, str(self.resolution), budget_key(self.budget),
                self.method, str(self.seed))

    @property
    def label(self) -> str:
        if self.method == RANDOM_INIT:
            return f"{self.target} {self.mode} random-init seed {self.seed}"
        return (f"{self.target} {self.mode} {self.resolution}px {budget_label(self.budget)} "
                f"{self.method} seed {self.seed}")


@dataclass
class Steps:
    """The pipeline functions a grid calls; tests swap in fakes to count calls."""

    select: Callable[..., Any]
    reselect: Callable[..., Any]
    pretrain: Callable[..., Any]
    finetune: Callable[..., Any]

    @staticmethod
    def default() -> Steps:
        # Imported late: condpretrain.api imports this module.
        import importlib

        from condpretrain import api

        found = {}
        for name in ("select", "reselect", "pretrain", "finetune"):
            found[name] = getattr(api, name, None)
            if found[name] is None and name in ("select", "reselect"):
                try:  # the selection module, where api has not re-exported it
                    found[name] = getattr(importlib.import_module("condpretrain.selection"), name)
                except (ImportError, AttributeError):
                    pass
        missing = [n for n, f in found.items() if f is None]
        if missing:
            raise CondPretrainError(
                f"this installation lacks {', '.join(missing)}; the experiment needs them"
            )
        return Steps(**found)


@dataclass
class ExperimentResult:
    out_dir: Path
    results_csv: Path
    rows: list[dict[str, str]]
    ran: int  # cells computed by this call
    skipped: int  # cells already in results.csv


# --------------------------------------------------------------------------- loading


def budget_key(budget: float) -> str:
    return f"{float(budget):g}"


def budget_label(budget: float) -> str:
    return f"{float(budget) * 100:g}%"


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Parse and check an experiment file; any problem names the key at fault."""
    path = Path(path)
    if not path.is_file():
        raise CondPretrainError(f"experiment file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "parse error"
        raise CondPretrainError(f"{path}: not valid YAML ({first})") from None
    if not isinstance(data, dict):
        raise CondPretrainError(f"{path}: expected a mapping of key: value at the top level")
    return parse_experiment(data, where=str(path), base=path.parent)


def parse_experiment(data: dict[str, Any], where: str = "experiment",
                     base: Path | None = None) -> ExperimentConfig:
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    known = {f.name for f in fields(ExperimentConfig)}
    for key in data:
        if key not in known:
            raise CondPretrainError(
                f"{where}: unknown key {key!r} (known: {', '.join(sorted(known))})")
    for key in ("pool", "targets"):
        if data.get(key) in (None, "", [], {}):
            raise CondPretrainError(f"{where}: {key}: required")
    base = base or Path.cwd()
    config = ExperimentConfig(
        pool=[_resolve_spec(s, base) for s in _str_list(data["pool"], "pool", where)],
        targets=_targets(data["targets"], where, base),
    )
    if "name" in data:
        config.name = _string(data["name"], "name", where)
    if "preset" in data:
        config.preset = _choice(data["preset"], PRESET_NAMES, "preset", where)
    if "methods" in data:
        config.methods = [_choice(m, METHODS, "methods", where)
                          for m in _str_list(data["methods"], "methods", where)]
    if "budgets" in data:
        config.budgets = [_fraction(b, where) for b in _list(data["budgets"], "budgets", where)]
    if "resolutions" in data:
        config.resolutions = [_positive_int(r, "resolutions", where)
                              for r in _list(data["resolutions"], "resolutions", where)]
    if "modes" in data:
        config.modes = [_choice(m, MODES, "modes", where)
                        for m in _str_list(data["modes"], "modes", where)]
    if "seeds" in data:
        config.seeds = [_int(s, "seeds", where) for s in _list(data["seeds"], "seeds", where)]
    if "baselines" in data:
        config.baselines = _baselines(data["baselines"], where)
    for name in SECTIONS:
        if name in data:
            setattr(config, name, _section(data[name], name, where))
    for name, values in (("methods", config.methods), ("budgets", config.budgets),
                         ("resolutions", config.resolutions), ("modes", config.modes),
                         ("seeds", config.seeds)):
        if len(set(values)) != len(values):
            raise CondPretrainError(f"{where}: {name}: repeated values in {values}")
    check_configs(config, where)
    return config


def check_configs(config: ExperimentConfig, where: str = "experiment") -> None:
    """Build one config of each kind now, so a bad option fails before hours of work."""
    for mode in config.modes:
        for name, cls in SECTIONS.items():
            try:
                build_config(cls, config.preset, **section_values(config, name, mode))
            except CondPretrainError as exc:
                raise CondPretrainError(f"{where}: {name}: {exc}") from None


def section_values(config: ExperimentConfig, name: str, mode: str) -> dict[str, Any]:
    """A section's options for one mode: common options, then the mode's own."""
    section = getattr(config, name)
    values = {k: v for k, v in section.items() if k not in MODES}
    values.update(section.get(mode, {}))
    return values


def _section(value: Any, name: str, where: str, kind: str | None = None) -> dict[str, Any]:
    """Options of one config section; ``kind`` is the section's class name when nested."""
    kind = kind or name
    if not isinstance(value, dict):
        raise CondPretrainError(f"{where}: {name}: expected a mapping of option: value")
    known = set(config_fields(SECTIONS[kind]))
    section: dict[str, Any] = {}
    for raw_key, item in value.items():
        key = str(raw_key).replace("-", "_")
        if key in MODES and kind == name and kind != "select":  # selection is mode-free
            section[key] = _section(item, f"{name}.{key}", where, kind)
            continue
        if key not in known:
            raise CondPretrainError(f"{where}: {name}.{key}: unknown option "
                                    f"(known: {', '.join(sorted(known))})")
        if key in GRID_OWNED[kind]:
            raise CondPretrainError(f"{where}: {name}.{key}: set by the grid, not here")
        section[key] = item
    return section


def _targets(value: Any, where: str, base: Path) -> dict[str, str]:
    if isinstance(value, dict):
        pairs = [(_string(k, "targets", where), _string(v, f"targets.{k}", where))
                 for k, v in value.items()]
    else:
        pairs = []
        for spec in _str_list(value, "targets", where):
            name, sep, path = spec.partition("=")
            pairs.append((name, path) if sep and name else (Path(spec).name, spec))
    targets: dict[str, str] = {}
    for name, spec in pairs:
        if not name or "/" in name or name.startswith("."):
            raise CondPretrainError(f"{where}: targets: {name!r} is not a usable name")
        if name in targets:
            raise CondPretrainError(f"{where}: targets: two targets are named {name!r}")
        targets[name] = str(_resolve(spec, base))
    return targets


def _resolve_spec(spec: str, base: Path) -> str:
    name, sep, path = spec.partition("=")
    if sep and name and not (base / spec).exists():
        return f"{name}={_resolve(path, base)}"
    return str(_resolve(spec, base))


def _resolve(path: str, base: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _list(value: Any, key: str, where: str) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise CondPretrainError(f"{where}: {key}: give at least one value")
    return items


def _str_list(value: Any, key: str, where: str) -> list[str]:
    return [_string(v, key, where) for v in _list(value, key, where)]


def _string(value: Any, key: str, where: str) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool) or str(value) == "":
        raise CondPretrainError(f"{where}: {key}: expected text, got {value!r}")
    return str(value)


def _choice(value: Any, allowed: tuple[str, ...], key: str, where: str) -> str:
    if value not in allowed:
        raise CondPretrainError(
            f"{where}: {key}: unknown value {value!r} (known: {', '.join(allowed)})")
    return str(value)


def _int(value: Any, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CondPretrainError(f"{where}: {key}: expected whole numbers, got {value!r}")
    return value


def _positive_int(value: Any, key: str, where: str) -> int:
    number = _int(value, key, where)
    if number <= 0:
        raise CondPretrainError(f"{where}: {key}: must be positive, got {value!r}")
    return number


def _fraction(value: Any, where: str) -> float:
    """A budget as a fraction of the pool: 0.06, or '6%'."""
    raw = value
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            value = float(value.strip()[:-1]) / 100
        except ValueError:
            value = None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise CondPretrainError(
            f"{where}: budgets: {raw!r} is not a fraction in (0, 1) such as 0.06 or '6%' "
            "(0 % and 100 % are the baselines)")
    return float(value)


def _baselines(value: Any, where: str) -> list[str]:
    if value is True:
        return list(BASELINES)
    if value in (False, None):
        return []
    return [_choice(b, BASELINES, "baselines", where) for b in _str_list(value, "baselines", where)]


# --------------------------------------------------------------------------- the grid


def cells(config: ExperimentConfig) -> list[Cell]:
    """Every row of the results table, in the order they run (baselines first)."""
    grid: list[Cell] = []
    for target in config.targets:
        for mode in config.modes:
            for seed in config.seeds:
                if RANDOM_INIT in config.baselines:
                    grid.append(Cell(target, mode, 0, 0.0, RANDOM_INIT, seed))
                for res in config.resolutions:
                    if ENTIRE_POOL in config.baselines:
                        grid.append(Cell(target, mode, res, 1.0, ENTIRE_POOL, seed))
                    for budget in sorted(config.budgets):
                        for method in config.methods:
                            grid.append(Cell(target, mode, res, budget, method, seed))
    return grid


class Experiment:
    """Runs a grid into ``out``; every artefact lives under it, named by what it depends on."""

    def __init__(self, config: ExperimentConfig, out: str | Path, steps: Steps | None = None):
        self.config = config
        self.out = Path(out)
        self.steps = steps or Steps.default()

    # Folder layout: the path says which cells may share the artefact.
    def scores_dir(self, target: str, method: str, seed: int) -> Path:
        return self.out / "select" / target / method / f"seed{seed}" / "scores"

    def subset_dir(self, target: str, method: str, budget: float, seed: int) -> Path:
        return self.out / "select" / target / method / f"seed{seed}" / f"b{budget_key(budget * 100)}"

    def pretrain_dir(self, cell: Cell) -> Path:
        group = self.out / "pretrain" / f"{cell.mode}-{cell.resolution}"
        if cell.method == ENTIRE_POOL:
            return group / ENTIRE_POOL / f"seed{cell.seed}"
        return (group / cell.target / f"{cell.method}-b{budget_key(cell.budget * 100)}"
                / f"seed{cell.seed}")

    def finetune_dir(self, cell: Cell) -> Path:
        where = self.out / "finetune" / cell.target
        if cell.method == RANDOM_INIT:
            return where / cell.mode / RANDOM_INIT / f"seed{cell.seed}"
        name = cell.method if cell.method == ENTIRE_POOL else \
            f"{cell.method}-b{budget_key(cell.budget * 100)}"
        return where / f"{cell.mode}-{cell.resolution}" / name / f"seed{cell.seed}"

    # Configs of one cell: preset -> experiment sections -> what the grid sets.
    def select_config(self, target: str, method: str, seed: int) -> SelectConfig:
        return build_config(SelectConfig, self.config.preset,
                            **{**section_values(self.config, "select", "supervised"),
                               "method": method, "seed": seed,
                               "fraction": min(self.config.budgets),
                               "cache_dir": str(self.out / "cache" / target)})

    def pretrain_config(self, cell: Cell) -> PretrainConfig:
        return build_config(PretrainConfig, self.config.preset,
                            **{**section_values(self.config, "pretrain", cell.mode),
                               "mode": cell.mode, "resolution": cell.resolution or None,
                               "seed": cell.seed})

    def finetune_config(self, cell: Cell, init: Path | None) -> FinetuneConfig:
        # The fine-tuned network must be the pre-trained one, so its arch is the mode's.
        arch = build_config(PretrainConfig, self.config.preset,
                            **{**section_values(self.config, "pretrain", cell.mode),
                               "mode": cell.mode}).resolved_arch()
        return build_config(FinetuneConfig, self.config.preset,
                            **{**section_values(self.config, "finetune", cell.mode),
                               "arch": arch, "seed": cell.seed,
                               "init": str(init) if init else None})

    def run(self) -> ExperimentResult:
        self.out.mkdir(parents=True, exist_ok=True)
        self.check_same_settings()
        atomic.write_text(self.out / "experiment.yaml", self.config.to_yaml())
        rows = read_results(self.out / RESULTS_FILE)
        done = {row_key(r) for r in rows}
        grid = cells(self.config)
        todo = [c for c in grid if c.key not in done]
        log.info("experiment %s: %d cells, %d already done", self.config.name, len(grid),
                 len(grid) - len(todo))
        with progress_bar(len(grid), desc="experiment", unit="cell",
                          initial=len(grid) - len(todo)) as bar:
            for cell in todo:
                bar.set_description(f"experiment: {cell.label}")
                log.info("cell %s", cell.label)
                rows.append(self.run_cell(cell))
                write_results(self.out / RESULTS_FILE, rows)
                bar.update(1)
        return ExperimentResult(self.out, self.out / RESULTS_FILE, rows, len(todo),
                                len(grid) - len(todo))

    def check_same_settings(self) -> None:
        """Growing a grid (more methods, budgets, seeds...) into the same folder is fine;
        changing what a finished cell was computed with would mix two experiments."""
        saved = self.out / "experiment.yaml"
        if not saved.is_file():
            return
        try:
            before = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            return
        now = yaml.safe_load(self.config.to_yaml())
        for key in SETTINGS_KEYS:
            if key in before and before[key] != now[key]:
                raise CondPretrainError(
                    f"--out {self.out} was run with another {key!r} ({before[key]!r}); "
                    "finished cells would not match: choose another --out")

    def run_cell(self, cell: Cell) -> dict[str, str]:
        row: dict[str, Any] = dict(zip(KEY_COLUMNS, cell.key, strict=True))
        subset: Path | None = None
        init: Path | None = None
        if cell.method not in BASELINES:
            sel = self.selection(cell.target, cell.method, cell.budget, cell.seed)
            subset = sel["subset_csv"]
            row.update(selected=sel["selected"], pool_size=sel["pool_size"],
                       select_seconds=sel["seconds"],
                       select_device_hours=sel["seconds"] / 3600,
                       select_dir=self._rel(sel["dir"]))
        if cell.method != RANDOM_INIT:
            cost, run_dir = self.pretrained(cell, subset)
            init = run_dir / "backbone.pt"
            row.update(pretrain_seconds=cost.get("wall_seconds", ""),
                       pretrain_device_hours=cost.get("device_hours", ""),
                       pretrain_images=cost.get("images", ""),
                       pretrain_flops=cost.get("flops", ""),
                       pretrain_dir=self._rel(run_dir))
        else:
            row.update(pretrain_seconds=0, pretrain_device_hours=0, pretrain_images=0,
                       pretrain_flops=0)
        ft_config = self.finetune_config(cell, init)
        result, cost, run_dir = self.finetuned(cell, ft_config)
        row.update(arch=ft_config.arch, top1=result.get("top1", ""), top5=result.get("top5", ""),
                   best_top1=result.get("best_top1", ""),
                   finetune_seconds=cost.get("wall_seconds", ""),
                   finetune_device_hours=cost.get("device_hours", ""),
                   finetune_dir=self._rel(run_dir),
                   finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
        return {k: _cell_text(v) for k, v in row.items()}

    def selection(self, target: str, method: str, budget: float, seed: int) -> dict[str, Any]:
        """Score once per (target, method, seed); every budget re-selects from the scores."""
        scores = self.scores_dir(target, method, seed)
        score_seconds = selection_seconds(scores) if _selection_done(scores) else None
        if score_seconds is None:
            started = time.perf_counter()
            result = self.steps.select(self.config.pool, self.config.targets[target], scores,
                                       self.select_config(target, method, seed))
            score_seconds = _seconds(result, started)
        out = self.subset_dir(target, method, budget, seed)
        if not _selection_done(out):
            started = time.perf_counter()
            result = self.steps.reselect(scores, out, fraction=budget)
            reselect_seconds = _seconds(result, started)
        else:
            # A re-selection's timings repeat the scoring's; only its own stage is new.
            timings = _read_json(out / "selection.json").get("timings", {})
            reselect_seconds = float(timings.get("reselect", 0.0))
        info = _read_json(out / "selection.json")
        return {"dir": out, "subset_csv": out / "subset.csv",
                "selected": info.get("selected", _count_rows(out / "subset.csv")),
                "pool_size": info.get("pool_size", ""),
                "seconds": score_seconds + reselect_seconds}

    def pretrained(self, cell: Cell, subset: Path | None) -> tuple[dict[str, Any], Path]:
        run_dir = self.pretrain_dir(cell)
        if not _finished(run_dir, "backbone.pt"):
            self.steps.pretrain(self.config.pool, run_dir, self.pretrain_config(cell),
                                subset=str(subset) if subset else None,
                                resume=_started(run_dir))
        return _read_json(run_dir / "run.json"), run_dir

    def finetuned(self, cell: Cell, config: FinetuneConfig
                  ) -> tuple[dict[str, Any], dict[str, Any], Path]:
        run_dir = self.finetune_dir(cell)
        if not _finished(run_dir):
            self.steps.finetune(self.config.targets[cell.target], run_dir, config,
                                resume=_started(run_dir))
        return _read_json(run_dir / "result.json"), _read_json(run_dir / "run.json"), run_dir

    def _rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.out))
        except ValueError:
            return str(path)


def run(experiment: ExperimentConfig | str | Path, out: str | Path,
        steps: Steps | None = None) -> ExperimentResult:
    """Run (or resume) the grid of an experiment file or config into ``out``."""
    if not isinstance(experiment, ExperimentConfig):
        experiment = load_experiment(experiment)
    return Experiment(experiment, out, steps).run()


# --------------------------------------------------------------------------- results file


def row_key(row: dict[str, str]) -> tuple[str, ...]:
    return tuple(row.get(k, "") for k in KEY_COLUMNS)


def read_results(path: str | Path) -> list[dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in KEY_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CondPretrainError(f"{path}: not a results table (missing columns: "
                                    f"{', '.join(missing)})")
        return [{k: v or "" for k, v in row.items() if k is not None} for row in reader]


def write_results(path: str | Path, rows: list[dict[str, str]]) -> None:
    """Known columns first, then any extra ones (e.g. detection metrics added later)."""
    extra = sorted({k for r in rows for k in r} - set(RESULT_COLUMNS))
    columns = [*RESULT_COLUMNS, *extra]
    with atomic.atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


# --------------------------------------------------------------------------- artefacts


def selection_seconds(sel_dir: Path) -> float | None:
    """Seconds a saved selection took, from its ``selection.json`` timings."""
    info = _read_json(sel_dir / "selection.json")
    timings = info.get("timings")
    if not isinstance(timings, dict):
        return None
    if isinstance(timings.get("total"), (int, float)):
        return float(timings["total"])
    return float(sum(_walk_numbers(timings)))


def _walk_numbers(obj: Any) -> Iterator[float]:
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield float(obj)
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _walk_numbers(value)


def _selection_done(sel_dir: Path) -> bool:
    return (sel_dir / "selection.json").is_file() and (sel_dir / "subset.csv").is_file()


def _started(run_dir: Path) -> bool:
    """A killed run left its cost or checkpoint file: continue it (``resume=True``)
    rather than start over; the training API refuses to overwrite without it."""
    return (run_dir / "run.json").is_file() or (run_dir / "checkpoint.pt").is_file()


def _finished(run_dir: Path, *needed: str) -> bool:
    """``result.json`` is written once, when a run is done."""
    return all((run_dir / name).is_file() for name in ("result.json", "run.json", *needed))


def _seconds(result: Any, started: float) -> float:
    seconds = getattr(result, "seconds", None)
    return float(seconds) if isinstance(seconds, (int, float)) else time.perf_counter() - started


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _count_rows(path: Path) -> int | str:
    try:
        with open(path, encoding="utf-8") as handle:
            return max(sum(1 for _ in handle) - 1, 0)
    except OSError:
        return ""


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
