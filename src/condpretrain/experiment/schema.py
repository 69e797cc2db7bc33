"""The experiment file: every key declared once as an option, every value checked once.

A file names a pool, the targets, the grid's axes and, in the sections ``select``,
``pretrain``, ``finetune``, ``detect`` and ``segment``, options of the matching command.
Inside every section but ``select`` a mode's name holds overrides for that mode only::

    finetune: {epochs: 90, moco: {lr: 0.001}}

A target may hold its own ``select`` options and those of its task (``finetune``, or
the downstream command that trains on it: :mod:`.target_schema`), applied on top of the
experiment's (mode overrides included) for that target's cells only::

    targets: {cars: /data/cars, fmow: {path: /data/fmow, finetune: {optimizer: adam}},
              voc07: {path: /data/VOCdevkit/VOC2007, task: detect}}

The top-level keys are the fields of :class:`ExperimentConfig`; a section's keys are the
options of its command's config class, less those the grid sets per cell (``grid=True``).
Both go through :func:`~condpretrain.config.options.parse_mapping`, so every error is one
line naming the file and the key as written: ``exp.yaml: select.batch_size must be
positive, got -1``. So does the ``slurm`` section (:mod:`.slurm_schema`): where ``run
--launcher slurm`` submits the steps, which changes nothing they compute.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from condpretrain.config import (
    PRESET_NAMES,
    DetectConfig,
    FinetuneConfig,
    PretrainConfig,
    SegmentConfig,
    SelectConfig,
    build_config,
    load_yaml,
)
from condpretrain.config.common import parse_fractions
from condpretrain.config.options import Option, option, option_map, parse_mapping
from condpretrain.config.select import method_choices, parse_method
from condpretrain.errors import CondPretrainError
from condpretrain.experiment.mix_schema import check_mix_policy, check_mixes, is_mix
from condpretrain.experiment.results import BASELINES
from condpretrain.experiment.slurm_schema import parse_slurm
from condpretrain.experiment.target_schema import (
    DOWNSTREAM_SECTIONS,
    TARGET_SECTIONS,
    TargetSpec,
    one_or_many,
    parse_targets,
    resolve_target,
    task_of,
)
from condpretrain.registry import PRETRAIN_METHODS, SCORERS

# ------------------------------------------------------------------- value parsers


def _all_or_none(value: Any) -> Any:
    """``baselines: true`` runs both, ``false`` (or left empty) neither."""
    if value is True:
        return list(BASELINES)
    if value is False:
        return []
    return value


def _methods(value: Any) -> list[Any]:
    """Each method as ``select --method`` reads it, so ``fuse:A, B`` is ``fuse:A,B`` once
    its parts are checked (the error names the key, not the flag)."""
    try:
        return [parse_method(method) for method in one_or_many(value)]
    except CondPretrainError as exc:
        raise CondPretrainError(f"methods: {str(exc).removeprefix('--method ')}") from None


def _default_mode() -> list[str]:
    """The ``pretrain`` command's own default mode."""
    return [option_map(PretrainConfig)["mode"].default]


# ------------------------------------------------------------------- the file's keys

# An axis of the grid: at least one value, none twice (it would run a cell twice).
_AXIS: dict[str, Any] = {"grid": True, "min_items": 1, "unique": True}


def _paper_methods() -> list[str]:
    return SCORERS.names(having="in_paper")


@dataclass
class ExperimentConfig:
    """One experiment file. Paths are resolved against the file's folder."""

    pool: list[str] = option(help="pool sources: FOLDER, NAME=FOLDER or a manifest CSV",
                             parse=one_or_many)
    targets: dict[str, TargetSpec] = option(
        help="target datasets: {name: folder} or {name: {path: folder, finetune: {...}, "
        "select: {...}}} (the target's own options), {name: {path: VOC folder, task: "
        "detect or segment, voc: [folders]}} (trained on by that command instead of "
        "finetune), or a list of NAME=FOLDER or FOLDER", parse=parse_targets)
    # Neutral: only a label. Grid: an axis of the grid, which may grow (more methods,
    # seeds...) into a folder that holds finished cells; every other key may not change.
    name: str = option("experiment", "shown in the report's title", neutral=True)
    preset: str = option("paper", "preset of every command's options", choices=PRESET_NAMES)
    methods: list[str] = option(default_factory=_paper_methods,
                                help="selection methods (default: the paper's), each "
                                "METHOD or METHOD@FEATURES (knn@classic: knn on those "
                                "features), or fuse:A,B,...: reciprocal-rank fusion of "
                                "methods A, B (each scored once, shared with its own cells)",
                                choices=method_choices, parse=_methods, **_AXIS)
    budgets: list[float] = option(
        default_factory=lambda: [0.06, 0.12], help="shares of the pool to select, e.g. 0.06 "
        "or '6%' (0 % and 100 % are the baselines)", low=0, high=1, low_open=True,
        high_open=True, parse=parse_fractions, **_AXIS)
    resolutions: list[int] = option(default_factory=lambda: [224, 112],
                                    help="pre-training resolutions (px)", low=0, low_open=True,
                                    **_AXIS)
    modes: list[str] = option(default_factory=_default_mode, help="pre-training methods",
                              choices=PRETRAIN_METHODS.choices(), **_AXIS)
    seeds: list[int] = option(default_factory=lambda: [0], help="every cell runs once per seed",
                              **_AXIS)
    baselines: list[str] = option(default_factory=lambda: list(BASELINES),
                                  help="baseline rows (true: all, false: none)",
                                  choices=BASELINES, parse=_all_or_none, grid=True,
                                  unique=True)
    select: dict[str, Any] = option(default_factory=dict, help="options of `select`")
    pretrain: dict[str, Any] = option(default_factory=dict, help="options of `pretrain`; "
                                      "a mode's name holds that mode's own")
    finetune: dict[str, Any] = option(default_factory=dict, help="options of `finetune`; "
                                      "a mode's name holds that mode's own")
    detect: dict[str, Any] = option(default_factory=dict, help="options of `detect` for "
                                    "the targets whose task it is; a mode's name holds "
                                    "that mode's own")
    segment: dict[str, Any] = option(default_factory=dict, help="options of `segment` for "
                                     "the targets whose task it is; a mode's name holds "
                                     "that mode's own")
    # Neutral: where the steps run changes nothing they compute.
    slurm: dict[str, Any] = option(default_factory=dict, help="where `run --launcher slurm` "
                                   "submits the steps (see slurm_schema)", neutral=True)

    def to_yaml(self) -> str:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return yaml.safe_dump(data, sort_keys=False)

    def target_path(self, name: str) -> str:
        spec = self.targets[name]
        if is_mix(spec):  # its cells select for it, and train on its parts
            raise CondPretrainError(f"targets.{name}: a mix of targets has no folder")
        return spec["path"] if isinstance(spec, dict) else spec

    def target_task(self, name: str) -> str:
        """The command that trains on the target: ``finetune`` or a downstream task."""
        return task_of(self.targets.get(name))

    def target_vocs(self, name: str) -> list[str]:
        """The VOC folders a downstream target trains on (the first is tested)."""
        spec = self.targets[name]
        return list(spec.get("voc") or [spec["path"]]) if isinstance(spec, dict) else [spec]

    def target_section(self, name: str, section: str) -> dict[str, Any]:
        """The target's own options of ``section`` (none for a plain folder or a mix)."""
        spec = self.targets[name]
        return spec.get(section, {}) if isinstance(spec, dict) else {}

    def mix_of(self, name: str) -> dict[str, float] | None:
        """The parts of a mixed target with their shares (file order); None otherwise."""
        spec = self.targets.get(name)
        return dict(spec["mix"]) if is_mix(spec) else None


@dataclass(frozen=True)
class Section:
    """A key of the file holding the options of one command."""

    cls: type
    per_mode: bool  # may hold overrides under a mode's name (selection is mode-free)


SECTIONS: dict[str, Section] = {
    "select": Section(SelectConfig, per_mode=False),
    "pretrain": Section(PretrainConfig, per_mode=True),
    "finetune": Section(FinetuneConfig, per_mode=True),
    # the downstream tasks (target_schema.DOWNSTREAM_SECTIONS), each its command's config
    "detect": Section(DetectConfig, per_mode=True),
    "segment": Section(SegmentConfig, per_mode=True),
}


# ------------------------------------------------------------------- loading


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Parse and check an experiment file; any problem names the key at fault."""
    path = Path(path)
    if not path.is_file():
        raise CondPretrainError(f"experiment file not found: {path}")
    return parse_experiment(load_yaml(path), where=str(path), base=path.parent)


def parse_experiment(data: dict[str, Any], where: str = "experiment",
                     base: Path | None = None) -> ExperimentConfig:
    """An experiment from a mapping (a file's contents); ``where`` names it in errors."""
    data = {str(key).replace("-", "_"): value for key, value in data.items()}
    if "baselines" in data and data["baselines"] is None:
        data["baselines"] = False  # `baselines:` left empty reads as none, like false
    _check_required(data, where)
    values = parse_mapping(ExperimentConfig, data, where)
    for name, section in SECTIONS.items():
        if name in values:
            values[name] = parse_section(section, name, values[name], where)
    if "targets" in values:
        values["targets"] = {name: parse_target(name, spec, where)
                             for name, spec in values["targets"].items()}
        check_mixes(values["targets"], where)
    if "slurm" in values:
        values["slurm"] = parse_slurm(values["slurm"], where)
    config = _resolve_paths(ExperimentConfig(**values), base or Path.cwd())
    check_configs(config, where)
    return config


def parse_section(section: Section, name: str, values: dict[str, Any], where: str
                  ) -> dict[str, Any]:
    """Options of one section, checked; a mode's name holds a mapping of its own."""
    checked: dict[str, Any] = {}
    for raw_key, value in values.items():
        key = str(raw_key).replace("-", "_")
        if section.per_mode and key in PRETRAIN_METHODS:
            if not isinstance(value, dict):
                raise CondPretrainError(f"{where}: {name}.{key}: expected a mapping of "
                                        f"option: value, got {value!r}")
            checked[key] = _options(section.cls, value, where, f"{name}.{key}.")
        else:
            checked.update(_options(section.cls, {raw_key: value}, where, f"{name}."))
    return checked


def parse_target(name: str, spec: TargetSpec, where: str) -> TargetSpec:
    """A target's own sections, checked as the file's: ``targets.fmow.finetune.lr``."""
    if not isinstance(spec, dict) or is_mix(spec):
        return spec
    return {**spec, **{section: parse_section(SECTIONS[section], f"targets.{name}.{section}",
                                              spec[section], where)
                       for section in TARGET_SECTIONS if section in spec}}


def _options(cls: type, values: dict[str, Any], where: str, prefix: str) -> dict[str, Any]:
    """``values`` as options of ``cls``; an option the grid sets per cell is refused."""
    known = option_map(cls)
    for raw_key in values:
        opt: Option | None = known.get(str(raw_key).replace("-", "_"))
        if opt is not None and opt.grid:
            raise CondPretrainError(f"{where}: {prefix}{opt.name}: set per cell by the "
                                    "experiment grid, not here")
    settable = {name: opt for name, opt in known.items() if not opt.grid}
    return parse_mapping(cls, values, where, prefix, known=settable)


def _check_required(data: dict[str, Any], where: str) -> None:
    for f in dataclasses.fields(ExperimentConfig):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and data.get(f.name) in (None, "", [], {}):
            raise CondPretrainError(f"{where}: {f.name}: required")


def _resolve_paths(config: ExperimentConfig, base: Path) -> ExperimentConfig:
    slurm = dict(config.slurm)
    if slurm.get("folder"):
        slurm["folder"] = str(_resolve(slurm["folder"], base))
    return dataclasses.replace(
        config, pool=[_resolve_spec(spec, base) for spec in config.pool],
        targets={name: resolve_target(spec, lambda path: _resolve(path, base))
                 for name, spec in config.targets.items()},
        slurm=slurm)


def _resolve_spec(spec: str, base: Path) -> str:
    """``NAME=FOLDER`` keeps its name; a path that really holds a ``=`` stays a path."""
    name, sep, path = spec.partition("=")
    if sep and name and not (base / spec).exists():
        return f"{name}={_resolve(path, base)}"
    return str(_resolve(spec, base))


def _resolve(path: str, base: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


# ------------------------------------------------------------------- the configs it makes


def check_configs(config: ExperimentConfig, where: str = "experiment") -> None:
    """Build one config of each kind now, so a rule between options fails before hours
    of work rather than at the first cell that needs it."""
    own = [(t, f"targets.{t}.") for t in config.targets if isinstance(config.targets[t], dict)]
    for mode in config.modes:
        for name, section in SECTIONS.items():
            for target, prefix in [(None, ""), *own]:
                if target is not None and not config.target_section(target, name):
                    continue
                try:
                    build_config(section.cls, config.preset,
                                 **section_values(config, name, mode, target))
                except CondPretrainError as exc:
                    raise CondPretrainError(f"{where}: {prefix}{name}: {exc}") from None
    select = build_config(SelectConfig, config.preset, **section_values(config, "select"))
    check_mix_policy(config.targets, select.policy, where)
    tasks = {config.target_task(name) for name in config.targets}
    for name in DOWNSTREAM_SECTIONS:
        if getattr(config, name) and name not in tasks:  # options nothing would read
            raise CondPretrainError(f"{where}: {name}: no target's task is {name} (set "
                                    f"targets.NAME.task: {name})")


def section_values(config: ExperimentConfig, name: str, mode: str | None = None,
                   target: str | None = None) -> dict[str, Any]:
    """A section's options for one mode and target: the common ones, the mode's own,
    then the target's common ones and the target's for the mode (the most specific
    last: a target's ``lr`` holds in every mode)."""
    layers = [getattr(config, name)]
    if target is not None:
        layers.append(config.target_section(target, name))
    values: dict[str, Any] = {}
    for layer in layers:
        values.update({k: v for k, v in layer.items() if k not in PRETRAIN_METHODS})
        if mode is not None:
            values.update(layer.get(mode, {}))
    return values


__all__ = ["ExperimentConfig", "Section", "SECTIONS", "TARGET_SECTIONS", "load_experiment",
           "parse_experiment", "parse_section", "parse_target", "parse_fractions", "check_configs",
           "section_values"]
