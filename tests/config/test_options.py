"""Every config field is one declaration: reachable as a flag and as a YAML key, and
checked by the one validation, which names the option as the user wrote it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import yaml

from condpretrain.cli import build_parser, main
from condpretrain.cli.flags import flag_values
from condpretrain.config import (
    DetectConfig,
    FinetuneConfig,
    Option,
    PretrainConfig,
    SegmentConfig,
    SelectConfig,
    build_config,
    options,
)
from condpretrain.errors import CondPretrainError

COMMANDS = {
    "select": (SelectConfig, ["--out", "o"]),
    "pretrain": (PretrainConfig, ["--source", "p", "--out", "o"]),
    "finetune": (FinetuneConfig, ["--target", "t", "--out", "o"]),
    "detect": (DetectConfig, ["--voc", "v", "--out", "o"]),
    "segment": (SegmentConfig, ["--voc", "v", "--out", "o"]),
}
FIELDS = [(command, opt) for command, (cls, _) in COMMANDS.items() for opt in options(cls)]


def _ids(case: tuple[str, Option]) -> str:
    return f"{case[0]}.{case[1].name}"


def _base(kind: Any) -> Any:
    args = [a for a in getattr(kind, "__args__", ()) if a is not type(None)]
    return args[0] if getattr(kind, "__origin__", None) is None and args else kind


def valid_value(opt: Option) -> Any:
    """A value the option accepts that differs from its default where it can."""
    choices = opt.choice_list()
    if choices:
        return next((c for c in choices if c != opt.default), choices[0])
    kind = str(opt.type)
    if opt.type is bool:
        return not opt.default
    if "tuple" in kind:
        return (1, 3)
    if "int" in kind and "float" not in kind:
        return int(opt.low or 0) + 1 if opt.high is None else int(opt.high)
    if "float" in kind:
        low, high = opt.low or 0.0, opt.high
        return (low + high) / 2 if high is not None else low + 0.5
    return "some-value"


def out_of_bounds(opt: Option) -> Any | None:
    if opt.low is not None:
        return opt.low - 1
    if opt.high is not None:
        return opt.high + 1
    return None


def wrong_type(opt: Option) -> Any:
    return "maybe" if opt.type is bool else ["a", "list"] if "str" in str(opt.type) and \
        "tuple" not in str(opt.type) else "not-a-number"


def _flag_args(opt: Option, value: Any) -> list[str]:
    if opt.type is bool:
        return [opt.flag if value else f"--no-{opt.flag[2:]}"]
    text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
    return [opt.flag, text]


def _parse(command: str, extra: list[str]) -> argparse.Namespace:
    return build_parser().parse_args([command, *COMMANDS[command][1], *extra])


@pytest.mark.parametrize("case", FIELDS, ids=_ids)
def test_every_field_is_a_flag_and_a_yaml_key(case, tmp_path: Path):
    command, opt = case
    cls = COMMANDS[command][0]
    value = valid_value(opt)
    given = flag_values(_parse(command, _flag_args(opt, value)), cls)
    assert given == {opt.name: value}
    config_file = tmp_path / "c.yaml"
    config_file.write_text(yaml.safe_dump({opt.name: list(value) if isinstance(value, tuple)
                                           else value}))
    config = build_config(cls, "paper", config_file)
    assert getattr(config, opt.name) == value


@pytest.mark.parametrize("case", FIELDS, ids=_ids)
def test_bad_values_are_one_line_errors_naming_the_option(case, tmp_path: Path):
    command, opt = case
    cls = COMMANDS[command][0]
    bad = [wrong_type(opt)]
    if out_of_bounds(opt) is not None:
        bad.append(out_of_bounds(opt))
    if opt.choice_list():
        bad.append("no-such-choice")
    for value in bad:
        if not isinstance(value, list) and opt.type is not bool:
            with pytest.raises(CondPretrainError) as flag_error:
                flag_values(_parse(command, _flag_args(opt, value)), cls)
            assert opt.flag in str(flag_error.value) and "\n" not in str(flag_error.value)
        config_file = tmp_path / "c.yaml"
        config_file.write_text(yaml.safe_dump({opt.name: value}))
        with pytest.raises(CondPretrainError) as yaml_error:
            build_config(cls, "paper", config_file)
        message = str(yaml_error.value)
        assert opt.name in message and str(config_file) in message and "\n" not in message


def test_wrong_type_on_the_command_line_is_one_line_exit_2(capsys):
    assert main(["select", "--out", "o", "--source", "p", "--batch-size", "many"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--batch-size" in err and "many" in err


def test_unknown_flag_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["pretrain", "--source", "p", "--out", "o", "--epoch", "3"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--epoch" in err


def test_help_shows_real_defaults_and_presets(capsys):
    with pytest.raises(SystemExit):
        main(["select", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "k-means K; must be positive (default 200; quick: 20)" in text
    assert "--amp, --no-amp" in text


def test_pretrain_help_defaults_come_from_the_method_registry(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "per --mode (supervised: resnet34, moco: resnet50)" in text


def test_flags_override_yaml_and_yaml_overrides_the_preset(tmp_path: Path):
    config_file = tmp_path / "c.yaml"
    config_file.write_text("clusters: 7\nkmeans-iters: 3\n")
    config = build_config(SelectConfig, "quick", config_file, kmeans_iters=4)
    assert (config.clusters, config.kmeans_iters, config.batch_size) == (7, 4, 64)


@pytest.mark.parametrize("text, option", [
    ('epochs: "one"\n', "epochs"), ('lr: "0.1"\n', "lr"), ("batch_size: 0.5\n", "batch_size"),
    ("epochs: 1.5\n", "epochs"), ("amp: maybe\n", "amp"),
])
def test_wrong_typed_yaml_values_stop_before_any_work(tmp_path: Path, capsys, text, option):
    """Typed YAML values must have the option's type (a flag's text is read as it); the
    command stops on its first line, before it reads a single image."""
    config_file = tmp_path / "c.yaml"
    config_file.write_text(text)
    assert main(["pretrain", "--source", str(tmp_path / "no-pool"), "--out",
                 str(tmp_path / "run"), "--config", str(config_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and option in err and str(config_file) in err
    assert not (tmp_path / "run").exists()


def test_a_binary_config_file_is_one_line(tmp_path: Path, capsys):
    config_file = tmp_path / "c.yaml"
    config_file.write_bytes(bytes(range(256)) * 4)
    assert main(["select", "--source", "p", "--out", str(tmp_path / "o"), "--config",
                 str(config_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(config_file) in err


def test_yaml_reads_exponents_as_numbers(tmp_path: Path):
    config_file = tmp_path / "c.yaml"
    config_file.write_text("lr: 1e-4\nweight_decay: 5E-5\n")
    config = build_config(PretrainConfig, "paper", config_file)
    assert (config.lr, config.weight_decay) == (1e-4, 5e-5)
