"""Command-line flags generated from the config dataclasses.

Each field becomes one flag (``batch_size`` -> ``--batch-size``; a bool gets ``--amp``
and ``--no-amp``). Flags are read as text and converted by the config's own validation
(:func:`~condpretrain.config.options.check_value`), so a wrong type or a value out of
bounds is the same one-line error whether it came from a flag or a YAML file. Every
flag defaults to "not given" (None), so presets and ``--config`` files still apply;
``--help`` shows the real default and what the ``quick`` preset changes.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from condpretrain.config import PRESET_NAMES, Option, build_config, check_value, options
from condpretrain.config.options import bounds_text


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (and exit 2), like every other error.

    Abbreviated flags are refused: ``--epoch`` must not silently mean ``--epochs``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_preset_flags(parser: argparse.ArgumentParser) -> None:
    """``--preset`` and ``--config``: where option values come from besides flags."""
    parser.add_argument("--preset", default="paper", metavar="{" + ",".join(PRESET_NAMES) + "}",
                        help="paper: the paper's models and schedules (default); "
                             "quick: small models, few epochs, for CPU trials")
    parser.add_argument("--config", metavar="YAML", default=None,
                        help="a YAML file of option: value standing for flags (flags win)")


def add_config_flags(parser: argparse.ArgumentParser, cls: type, yaml_keys: bool = True) -> None:
    """One flag per field of the config dataclass ``cls`` (``yaml_keys``: the command
    takes ``--config``, whose keys are the same options)."""
    also = "; also YAML keys for --config" if yaml_keys else ""
    group = parser.add_argument_group(f"options ({cls.__name__}{also})")
    for opt in options(cls):
        help_text = _help(opt, cls)
        if opt.type is bool:
            group.add_argument(opt.flag, dest=opt.name, default=None,
                               action=argparse.BooleanOptionalAction, help=help_text)
        else:
            group.add_argument(opt.flag, dest=opt.name, default=None, help=help_text,
                               metavar=_metavar(opt))


def flag_values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The values of the flags the user gave, converted and checked (named as flags)."""
    found = {}
    for opt in options(cls):
        raw = getattr(args, opt.name, None)
        if raw is not None:
            found[opt.name] = check_value(opt, raw, opt.flag, text=True)
    return found


def config_from_args(args: argparse.Namespace, cls: type) -> Any:
    """Defaults -> ``--preset`` -> ``--config`` YAML -> flags."""
    return build_config(cls, args.preset, args.config, **flag_values(args, cls))


def _metavar(opt: Option) -> str:
    if opt.metavar:
        return opt.metavar
    choices = opt.choice_list()
    if choices:
        return "{" + ",".join(choices) + "}"
    return opt.name.upper()


def _help(opt: Option, cls: type) -> str:
    """The declared help, the bounds, and the real defaults (the paper's, then quick's)."""
    parts = [opt.help] if opt.help else []
    if opt.low is not None or opt.high is not None:
        parts.append(f"must {bounds_text(opt)}")
    text = "; ".join(parts)
    defaults = [f"default {_default_text(opt)}"] if _default_text(opt) else []
    quick = cls.PRESETS.get("quick", {})
    if opt.name in quick:
        defaults.append(f"quick: {_value_text(quick[opt.name])}")
    if defaults:
        text += f" ({'; '.join(defaults)})"
    return text.replace("%", "%%")  # argparse formats help with %


def _default_text(opt: Option) -> str:
    if opt.default is not None:
        return _value_text(opt.default)
    if opt.default_by is None:
        return ""
    by, registry = opt.default_by
    per_class = [f"{name}: {_value_text(_registry_default(registry[name], opt.name))}"
                 for name in registry.names()]
    return f"per --{by.replace('_', '-')} ({', '.join(per_class)})" if per_class else ""


def _registry_default(cls: type, name: str) -> Any:
    """A registered class's default for option ``name``; ``<name>_text`` may describe it
    when it is a rule rather than a value (e.g. MoCo's lr scales with the batch)."""
    return getattr(cls, f"{name}_text", None) or getattr(cls, name, "?")


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


__all__ = ["OneLineParser", "add_preset_flags", "add_config_flags", "flag_values",
           "config_from_args"]
