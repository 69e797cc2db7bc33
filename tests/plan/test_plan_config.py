"""PlanConfig: its options read as an experiment file's, every preset known."""

from __future__ import annotations

import pytest

from condpretrain.config import PRESET_NAMES, PlanConfig, build_config
from condpretrain.config.plan import BASELINE_ROWS
from condpretrain.errors import CondPretrainError
from condpretrain.experiment.results import BASELINES


def test_baselines_are_spelled_as_the_results_table_spells_them():
    assert BASELINE_ROWS == BASELINES


def test_every_preset_builds_and_quick_calibrates_less():
    for name in PRESET_NAMES:
        build_config(PlanConfig, name)
    quick, paper = build_config(PlanConfig, "quick"), build_config(PlanConfig, "paper")
    assert quick.steps < paper.steps and quick.score_batches < paper.score_batches


def test_flags_read_like_an_experiment_file():
    config = build_config(PlanConfig, "paper", budgets="6%, 12%", baselines="false",
                          pretrain="{epochs: 2, moco: {batch_size: 32}}", hours=1.5)
    assert config.budgets == [0.06, 0.12]
    assert config.baselines == []
    assert config.pretrain == {"epochs": 2, "moco": {"batch_size": 32}}
    assert config.hours == 1.5


@pytest.mark.parametrize("option, value, message", [
    ("hours", -1, "--hours must be positive"),
    ("budgets", "150%", "--budgets must be in (0, 1)"),
    ("pretrain", "epochs 2", "--pretrain: expected a mapping"),
    ("methods", "best", "--methods must be one of"),
])
def test_bad_values_are_one_line_errors(option, value, message):
    with pytest.raises(CondPretrainError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_config(PlanConfig, "paper", **{option: value})
