"""Resolving a config: defaults -> preset -> YAML file -> flags, each value checked once.

The resolved config is saved beside every run (``to_dict``) so the exact command can
be rebuilt.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml

from condpretrain.config.base import PRESET_NAMES
from condpretrain.config.options import check_value, option_map, parse_mapping
from condpretrain.errors import CondPretrainError

C = TypeVar("C")


def build_config(
    cls: type[C],
    preset: str = "paper",
    yaml_file: str | Path | None = None,
    **overrides: Any,
) -> C:
    """Defaults -> preset -> YAML -> overrides (``None`` means 'not given').

    YAML keys are checked (and named in errors) as the file's keys; overrides as flags.
    """
    presets = cls.PRESETS  # type: ignore[attr-defined]
    if preset not in presets:
        raise CondPretrainError(f"--preset must be one of {', '.join(presets)}, got {preset!r}")
    values: dict[str, Any] = dict(presets[preset])
    if yaml_file is not None:
        values.update(parse_mapping(cls, load_yaml(yaml_file), str(yaml_file)))
    known = option_map(cls)
    for name, value in overrides.items():
        if value is None:
            continue
        if name not in known:
            raise CondPretrainError(f"unknown option {name!r} for {cls.__name__} "
                                    f"(known: {', '.join(sorted(known))})")
        values[name] = check_value(known[name], value, known[name].flag)
    config = dataclasses.replace(cls(), **values)
    config.validate()  # type: ignore[attr-defined]
    return config


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-4`` (no dot) as text; read it as the number it is meant to be,
    so that a quoted "0.1" stays the only way to write text where a number belongs."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def yaml_loads(text: str) -> Any:
    """YAML text as the config files read it (see ``_Loader``)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file holding a mapping at the top level; a bad file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise CondPretrainError(f"config file not found: {path}")
    try:
        data = yaml_loads(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise CondPretrainError(f"{path}: not valid YAML ({_first_line(exc)})") from None
    if not isinstance(data, dict):
        raise CondPretrainError(f"{path}: expected a mapping of option: value at the top level")
    return data


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


__all__ = ["PRESET_NAMES", "build_config", "load_yaml", "yaml_loads", "to_dict"]
