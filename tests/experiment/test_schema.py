"""Every key of the experiment file, walked from the declarations themselves.

For the top-level keys (the fields of ExperimentConfig) and for every option of the
sections (select / pretrain / finetune / detect / segment, and a mode's overrides inside
all but select): the key is reachable, a value out of bounds or of the wrong type is a one-line
CondPretrainError naming the key as written and the file, and an option the grid sets
per cell is refused.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from expfiles import refused

from condpretrain.config.options import Option, option_map, options
from condpretrain.config.select import fused_methods
from condpretrain.errors import CondPretrainError
from condpretrain.experiment import BASELINES, load_experiment
from condpretrain.experiment.schema import SECTIONS, ExperimentConfig
from condpretrain.experiment.target_schema import DOWNSTREAM_SECTIONS
from condpretrain.registry import PRETRAIN_METHODS, SCORERS

BASE = {"pool": "pool", "targets": {"t": "target"}}
TOP = options(ExperimentConfig)
SECTION_OPTIONS = [(name, opt) for name, section in SECTIONS.items()
                   for opt in options(section.cls)]
PER_MODE = [name for name, section in SECTIONS.items() if section.per_mode]


def _id(item: Any) -> str:
    return f"{item[0]}.{item[1].name}" if isinstance(item, tuple) else item.name


def scalar_type(opt: Option) -> Any:
    """The type of one item: ``int`` for ``int | None`` and for ``list[int]``."""
    kind = opt.type
    if typing.get_origin(kind) in (typing.Union, type(int | None)):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if typing.get_origin(kind) in (list, tuple):
        return typing.get_args(kind)[0], True
    return kind, False


def valid_value(opt: Option) -> Any:
    """A value the option accepts: its default, else one made from its declaration."""
    if opt.default is not None:
        return list(opt.default) if isinstance(opt.default, tuple) else opt.default
    choices = opt.choice_list()
    if choices:
        return choices[0]
    kind, _ = scalar_type(opt)
    if kind is bool:
        return True
    if kind in (int, float):
        low = opt.low if opt.low is not None else 0
        value = low + 1 if opt.low_open or opt.high is None else low
        return kind(value)
    return "x"


def wrong_typed(opt: Option) -> Any:
    """A value of the wrong type (or no allowed choice) for the option."""
    kind, is_list = scalar_type(opt)
    if typing.get_origin(kind) is dict or kind is dict:
        return True  # neither a mapping nor text (a number may name a folder)
    if opt.choice_list():
        item: Any = "no-such-choice"
    elif kind in (int, float):
        item = "many"
    elif kind is bool:
        item = "perhaps"
    else:
        item = {"a": {"b": 1}}
    return [item] if is_list else item


def out_of_bounds(opt: Option) -> list[Any]:
    """Values just past each bound the option declares."""
    kind, is_list = scalar_type(opt)
    values = []
    if opt.low is not None:
        values.append(opt.low if opt.low_open else opt.low - 1)
    if opt.high is not None:
        values.append(opt.high if opt.high_open else opt.high + 1)
    values = [kind(v) for v in values]
    return [[v] if is_list else v for v in values]


def write(tmp_path: Path, data: dict) -> Path:
    """BASE with ``data``; the options of a downstream task get a target of that task."""
    base = dict(BASE)
    for name in DOWNSTREAM_SECTIONS:
        if name in data:
            base["targets"] = {**base["targets"], f"voc-{name}": {"path": "voc", "task": name}}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({**base, **data}))
    return path


# ------------------------------------------------------------------- top-level keys


@pytest.mark.parametrize("opt", TOP, ids=_id)
def test_every_top_level_key_is_reachable(tmp_path: Path, opt: Option):
    value = BASE[opt.name] if opt.name in BASE else valid_value(opt)
    config = load_experiment(write(tmp_path, {opt.name: value}))
    assert getattr(config, opt.name) not in (None, "")


@pytest.mark.parametrize("opt", TOP, ids=_id)
def test_every_top_level_key_refuses_a_wrong_type(tmp_path: Path, opt: Option):
    refused(write(tmp_path, {opt.name: wrong_typed(opt)}), opt.name)


@pytest.mark.parametrize("opt", [o for o in TOP if o.low is not None or o.high is not None],
                         ids=_id)
def test_every_top_level_bound_is_checked(tmp_path: Path, opt: Option):
    for value in out_of_bounds(opt):
        message = refused(write(tmp_path, {opt.name: value}), opt.name)
        assert "must" in message


def test_choices_come_from_the_registries():
    declared = option_map(ExperimentConfig)
    # the registered methods, and the fusions of them and methods on given features
    # (fuse:A,B, knn@classic) checked so far
    methods = declared["methods"].choice_list()
    assert [m for m in methods if not fused_methods(m) and "@" not in m] == SCORERS.names()
    assert declared["modes"].choice_list() == PRETRAIN_METHODS.names()
    assert declared["baselines"].choice_list() == list(BASELINES)
    # the default grid is the paper's six; the others are chosen by name
    assert ExperimentConfig(pool=["p"], targets={"t": "t"}).methods == \
        SCORERS.names(having="in_paper") == SCORERS.names()[:6]


def test_a_registered_method_is_a_valid_choice(tmp_path: Path):
    extra = type("MyScorer", (), {"name": "my-method", "label": "Mine"})
    with SCORERS.registered(extra):
        config = load_experiment(write(tmp_path, {"methods": ["my-method"]}))
    assert config.methods == ["my-method"]
    refused(write(tmp_path, {"methods": ["my-method"]}), "methods")


def test_methods_may_name_their_features(tmp_path: Path):
    methods = ["knn@classic", "fuse:knn@classic,knn@classic:layout+gradients"]
    assert load_experiment(write(tmp_path, {"methods": methods})).methods == methods
    refused(write(tmp_path, {"methods": ["nope@classic"]}), "methods")
    message = refused(write(tmp_path, {"methods": ["knn@"]}), "methods")
    assert "name the features after '@'" in message


def test_budgets_take_percent_text(tmp_path: Path):
    config = load_experiment(write(tmp_path, {"budgets": ["6%", 0.12, "25 %"]}))
    assert config.budgets == pytest.approx([0.06, 0.12, 0.25])
    assert load_experiment(write(tmp_path, {"budgets": "6%, 12%"})).budgets == \
        pytest.approx([0.06, 0.12])


@pytest.mark.parametrize("value, expected", [(True, list(BASELINES)), (False, []), (None, [])])
def test_baselines_all_or_none(tmp_path: Path, value: Any, expected: list[str]):
    assert load_experiment(write(tmp_path, {"baselines": value})).baselines == expected


@pytest.mark.parametrize("key", ["methods", "budgets", "resolutions", "modes", "seeds"])
def test_an_axis_needs_distinct_values(tmp_path: Path, key: str):
    opt = option_map(ExperimentConfig)[key]
    one = valid_value(opt)[0] if isinstance(valid_value(opt), list) else valid_value(opt)
    refused(write(tmp_path, {key: []}), key)
    refused(write(tmp_path, {key: [one, one]}), key)


def test_unknown_key_lists_the_known_ones(tmp_path: Path):
    message = refused(write(tmp_path, {"budget": [0.1]}), "budget")
    assert all(o.name in message for o in TOP)


# ------------------------------------------------------------------- sections


@pytest.mark.parametrize("item", SECTION_OPTIONS, ids=_id)
def test_every_section_option_is_reachable_unless_the_grid_sets_it(tmp_path: Path,
                                                                  item: tuple[str, Option]):
    section, opt = item
    path = write(tmp_path, {section: {opt.name: valid_value(opt)}})
    if opt.grid:
        message = refused(path, f"{section}.{opt.name}")
        assert "grid" in message
    else:
        assert getattr(load_experiment(path), section)[opt.name] is not None


@pytest.mark.parametrize("item", [i for i in SECTION_OPTIONS if not i[1].grid], ids=_id)
def test_every_section_option_refuses_a_wrong_type(tmp_path: Path, item: tuple[str, Option]):
    section, opt = item
    refused(write(tmp_path, {section: {opt.name: wrong_typed(opt)}}), f"{section}.{opt.name}")


@pytest.mark.parametrize("item", [i for i in SECTION_OPTIONS if not i[1].grid
                                  and (i[1].low is not None or i[1].high is not None)], ids=_id)
def test_every_section_bound_is_checked(tmp_path: Path, item: tuple[str, Option]):
    section, opt = item
    for value in out_of_bounds(opt):
        message = refused(write(tmp_path, {section: {opt.name: value}}), f"{section}.{opt.name}")
        assert "must" in message


@pytest.mark.parametrize("section", PER_MODE)
def test_a_mode_holds_its_own_overrides(tmp_path: Path, section: str):
    cls = SECTIONS[section].cls
    for mode in PRETRAIN_METHODS.names():
        for opt in options(cls):
            key = f"{section}.{mode}.{opt.name}"
            if opt.grid:
                refused(write(tmp_path, {section: {mode: {opt.name: valid_value(opt)}}}), key)
                continue
            refused(write(tmp_path, {section: {mode: {opt.name: wrong_typed(opt)}}}), key)
        refused(write(tmp_path, {section: {mode: {"no_such_option": 1}}}),
                f"{section}.{mode}.no_such_option")
        refused(write(tmp_path, {section: {mode: 3}}), f"{section}.{mode}")


def test_mode_overrides_reach_the_mode_only(tmp_path: Path):
    from condpretrain.experiment.schema import section_values

    modes = PRETRAIN_METHODS.names()
    config = load_experiment(write(tmp_path, {
        "modes": modes, "finetune": {"epochs": 5, modes[-1]: {"epochs": 7}}}))
    assert section_values(config, "finetune", modes[-1])["epochs"] == 7
    assert all(section_values(config, "finetune", m)["epochs"] == 5 for m in modes[:-1])


def test_selection_has_no_per_mode_overrides(tmp_path: Path):
    mode = PRETRAIN_METHODS.names()[0]
    refused(write(tmp_path, {"select": {mode: {"dc_epochs": 1}}}), f"select.{mode}")


def test_section_values_are_typed_and_quoted_numbers_refused(tmp_path: Path):
    path = tmp_path / "raw.yaml"  # written by hand: YAML 1.1 alone would read 1e-4 as text
    path.write_text("pool: p\ntargets: {t: x}\npretrain: {lr: 1e-4, batch-size: 8}\n")
    assert load_experiment(path).pretrain == {"lr": 1e-4, "batch_size": 8}
    for key, value in (("lr", "0.1"), ("batch_size", "8"), ("epochs", 1.5)):
        with pytest.raises(CondPretrainError, match=f"pretrain.{key}"):
            load_experiment(write(tmp_path, {"pretrain": {key: value}}))
