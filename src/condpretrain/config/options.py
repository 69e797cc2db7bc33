"""An option declared once: a dataclass field with its default, help, choices and bounds.

    fraction: float | None = option(None, "share of the pool to keep, e.g. 0.06",
                                    low=0, high=1, low_open=True)

Everything else is generated from these fields: the CLI flags (``cli/flags.py``), the
``--config`` YAML keys, the experiment file's sections, and the one validation below,
which every value goes through whatever it came from. Errors name the option the way
the user wrote it: ``--fraction`` for a flag, ``select.fraction`` in an experiment file.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from condpretrain.errors import CondPretrainError

Choices = Sequence[str] | Callable[[], Sequence[str]]


@dataclass(frozen=True)
class Option:
    """What a field declares beyond its type and default (read with :func:`options`)."""

    name: str
    help: str
    type: Any
    default: Any
    choices: Choices | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    # Set per cell by the experiment grid, so an experiment file may not set it.
    grid: bool = False
    # Changes how fast or where a run goes, not what it computes: a run may resume with
    # another value, and scores computed with another value are reused.
    neutral: bool = False
    # A list option: the fewest values it takes, and whether a value may repeat.
    min_items: int = 0
    unique: bool = False
    # Turns a raw value into the field's type first (e.g. '6%' -> 0.06).
    parse: Callable[[Any], Any] | None = None
    # When None, the value comes from the class that another option picks in a registry:
    # (option name, registry); shown in --help.
    default_by: tuple[str, Any] | None = None
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def choice_list(self) -> list[str] | None:
        if self.choices is None:
            return None
        return list(self.choices() if callable(self.choices) else self.choices)


def option(default: Any = dataclasses.MISSING, help: str = "", *,  # noqa: A002
           default_factory: Callable[[], Any] | None = None, choices: Choices | None = None,
           low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False, grid: bool = False, neutral: bool = False,
           min_items: int = 0, unique: bool = False, parse: Callable[[Any], Any] | None = None, default_by: tuple[str, Any] | None = None,
           metavar: str | None = None) -> Any:
    """A dataclass field carrying its :class:`Option` declaration in its metadata."""
    meta = {"help": help, "choices": choices, "low": low, "high": high, "low_open": low_open,
            "high_open": high_open, "grid": grid, "neutral": neutral, "min_items": min_items,
            "unique": unique, "parse": parse,
            "default_by": default_by, "metavar": metavar}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata={"option": meta})
    return dataclasses.field(default=default, metadata={"option": meta})


def options(cls: type) -> list[Option]:
    """Every field of a config class as an :class:`Option`, in declaration order."""
    hints = typing.get_type_hints(cls)
    found = []
    for f in dataclasses.fields(cls):
        meta = dict(f.metadata.get("option", {}))
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        found.append(Option(name=f.name, type=hints[f.name], default=default,
                            help=meta.pop("help", ""), **meta))
    return found


def option_map(cls: type) -> dict[str, Option]:
    return {o.name: o for o in options(cls)}


# --------------------------------------------------------------------------- the validation


def check_value(opt: Option, value: Any, name: str, text: bool = False) -> Any:
    """``value`` converted to the option's type and checked against its choices and
    bounds; ``name`` is how the user spelled the option (for the one-line error).

    ``text``: the value is a flag's text, to be read as the option's type. Values from
    YAML or Python are typed already and must have the right type: ``epochs: "one"``,
    ``fraction: "0.1"`` (quoted) and ``epochs: 1.5`` are errors, not guesses.
    """
    if opt.parse is not None and value is not None:
        value = opt.parse(value)
    value = _convert(opt.type, value, name, text)
    if isinstance(value, (list, tuple)):
        _check_items(opt, value, name)
    for item in _items(value):
        _check_choice(opt, item, name)
        _check_bounds(opt, item, name)
    return value


def validate(config: Any, names: Callable[[Option], str] | None = None) -> None:
    """Check every field of ``config`` (type, choices, bounds); names default to flags."""
    for opt in options(type(config)):
        check_value(opt, getattr(config, opt.name), names(opt) if names else opt.flag)


def parse_mapping(cls: type, values: dict[str, Any], where: str, prefix: str = "",
                  known: dict[str, Option] | None = None) -> dict[str, Any]:
    """Keys of a YAML mapping (``-`` or ``_`` alike) checked as options of ``cls``."""
    known = known if known is not None else option_map(cls)
    checked = {}
    for raw_key, value in values.items():
        key = str(raw_key).replace("-", "_")
        if key not in known:
            raise CondPretrainError(f"{where}: {prefix}{key}: unknown option {raw_key!r} "
                                    f"(known: {', '.join(sorted(known))})")
        try:
            checked[key] = check_value(known[key], value, f"{prefix}{key}")
        except CondPretrainError as exc:
            raise CondPretrainError(f"{where}: {exc}") from None
    return checked


def _items(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _convert(kind: Any, value: Any, name: str, text: bool) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, name, text)
    if origin in (list, tuple):
        items = _split(value) if text or not isinstance(value, str) else [value]
        element = args[0] if args else str
        converted = [_convert(element, item, name, text) for item in items]
        return tuple(converted) if origin is tuple else converted
    if origin is dict or kind is dict:
        if not isinstance(value, dict):
            raise CondPretrainError(f"{name}: expected a mapping of key: value, got {value!r}")
        return dict(value)
    return _scalar(kind, value, name, text)


def _split(value: Any) -> list[Any]:
    """A list from YAML, a comma/space separated string from a flag, or one value."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        parts = value.replace(",", " ").split()
        return parts if parts else [value]
    return [value]


_NUMBER_WORDS = {int: "a whole number", float: "a number"}


def _scalar(kind: Any, value: Any, name: str, text: bool) -> Any:
    if kind is Any:
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        if text and isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return value.lower() in ("true", "yes")
        raise CondPretrainError(f"{name}: expected true or false, got {value!r}")
    if kind in _NUMBER_WORDS:
        # an int where a float belongs is fine; a float where an int belongs is not (1.5 epochs)
        accepted = (int, float) if kind is float else int
        if isinstance(value, accepted) and not isinstance(value, bool):
            return kind(value)
        if text and isinstance(value, str):
            try:
                return kind(value.strip())
            except ValueError:
                pass
        raise CondPretrainError(f"{name}: expected {_NUMBER_WORDS[kind]}, got {value!r}")
    if kind is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and \
                str(value) != "":
            return str(value)
        raise CondPretrainError(f"{name}: expected text, got {value!r}")
    raise TypeError(f"option {name}: unsupported type {kind!r}")  # a bug in a declaration


def _check_items(opt: Option, values: list[Any] | tuple[Any, ...], name: str) -> None:
    if len(values) < opt.min_items:
        raise CondPretrainError(f"{name}: give at least {opt.min_items} "
                                f"value{'s' if opt.min_items > 1 else ''}")
    if opt.unique and len(set(values)) != len(values):
        raise CondPretrainError(f"{name}: repeated values in {list(values)}")


def _check_choice(opt: Option, value: Any, name: str) -> None:
    allowed = opt.choice_list()
    if allowed is not None and value not in allowed:
        raise CondPretrainError(
            f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}")


def _check_bounds(opt: Option, value: Any, name: str) -> None:
    if opt.low is None and opt.high is None or not isinstance(value, (int, float)):
        return
    too_low = opt.low is not None and (value <= opt.low if opt.low_open else value < opt.low)
    too_high = opt.high is not None and (value >= opt.high if opt.high_open else value > opt.high)
    if too_low or too_high:
        raise CondPretrainError(f"{name} must {bounds_text(opt)}, got {value!r}")


def bounds_text(opt: Option) -> str:
    """'be positive', 'be at least 1', 'be in (0, 1]' ...: what follows "must" in the
    help and in the errors."""
    low, high = _number(opt.low), _number(opt.high)
    if opt.high is None:
        if opt.low == 0:
            return "be positive" if opt.low_open else "not be negative"
        return f"be more than {low}" if opt.low_open else f"be at least {low}"
    if opt.low is None:
        return f"be less than {high}" if opt.high_open else f"be at most {high}"
    return f"be in {'(' if opt.low_open else '['}{low}, {high}{')' if opt.high_open else ']'}"


def _number(value: float | None) -> str:
    return f"{value:g}" if value is not None else ""


__all__ = ["Option", "option", "options", "option_map", "check_value", "validate",
           "parse_mapping", "bounds_text"]
