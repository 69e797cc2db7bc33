"""PlanConfig: its options read as an experiment file's, every preset known."""

from __future__ import annotations

import pytest

from condpretrain.config import PRESET_NAMES, PlanConfig, build_config
from condpretrain.config.plan import BASELINE_ROWS
from condpretrain.errors import CondPretrainError
from condpretrain.experiment.results import BASELINES
from condpretrain.experiment.target_schema import FINETUNE_TASK, TASKS
from condpretrain.plan.make import SECTION_KEYS


def test_baselines_are_spelled_as_the_results_table_spells_them():
    assert BASELINE_ROWS == BASELINES


def test_methods_read_as_the_experiment_files_fusions_and_features_included():
    config = build_config(PlanConfig, "paper", methods='[random, "fuse:knn, random", knn@classic]')
    assert config.methods == ["random", "fuse:knn,random", "knn@classic"]
    assert build_config(PlanConfig, "paper", methods="random, knn@classic").methods == \
        ["random", "knn@classic"]


def test_voc_folders_are_one_folder_or_a_yaml_list():
    def voc(value):
        return build_config(PlanConfig, "paper", task="detect", voc=value).voc

    assert voc("[VOC2007, VOC2012]") == ["VOC2007", "VOC2012"]
    assert voc("my VOC, 2007") == ["my VOC, 2007"]  # a folder's name is never split


def test_tasks_and_sections_are_the_experiment_files():
    assert build_config(PlanConfig, "paper").task == FINETUNE_TASK
    for task in TASKS:
        assert build_config(PlanConfig, "paper", task=task).task == task
    sections = {name for name in SECTION_KEYS if name != "select"}
    assert sections == {"pretrain", *TASKS}  # a section per command that trains


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
    ("methods", "random,fuse:knn,random", "a fusion holds commas, so give the methods as a YAML"),
    ("methods", "best@classic", "--methods: 'best@classic'"),
    ("task", "classify", "--task must be one of"),
    ("voc", "VOC2007", "--voc: only a detect or segment target trains on VOC folders"),
    ("segment", "{epochs: 2}", "--segment: options of a task the target does not run"),
])
def test_bad_values_are_one_line_errors(option, value, message):
    with pytest.raises(CondPretrainError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_config(PlanConfig, "paper", **{option: value})
