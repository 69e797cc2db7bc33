"""A target's own options: `targets: {fmow: {path: ..., finetune: {optimizer: adam}}}`
(the paper fine-tunes fMoW with Adam, the other targets with SGD)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from expfiles import refused
from fake_steps import FakePipeline

from condpretrain.errors import CondPretrainError
from condpretrain.experiment import load_experiment, read_results, run
from condpretrain.experiment.schema import section_values


def write(tmp_path: Path, data: dict, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"pool": "pool", **data}))
    return path


def test_per_target_options_are_parsed(tmp_path: Path):
    config = load_experiment(write(tmp_path, {
        "targets": {"cars": "data/cars",
                    "fmow": {"path": "data/fmow", "finetune": {"optimizer": "adam",
                                                               "moco": {"epochs": 3}},
                             "select": {"batch-size": 8}}},
        "modes": ["supervised", "moco"],
        "finetune": {"epochs": 5, "lr": 0.05, "moco": {"epochs": 7}}}))
    assert config.targets["cars"] == str((tmp_path / "data" / "cars").resolve())
    assert config.target_path("fmow") == str((tmp_path / "data" / "fmow").resolve())
    assert config.target_section("fmow", "finetune") == {"optimizer": "adam",
                                                         "moco": {"epochs": 3}}
    assert config.target_section("cars", "finetune") == {}
    # on top of the experiment's section and its mode overrides, for that target only
    assert section_values(config, "finetune", "supervised", "fmow") == {
        "epochs": 5, "lr": 0.05, "optimizer": "adam"}
    assert section_values(config, "finetune", "moco", "fmow") == {
        "epochs": 3, "lr": 0.05, "optimizer": "adam"}
    assert section_values(config, "finetune", "moco", "cars") == {"epochs": 7, "lr": 0.05}
    assert section_values(config, "select", target="fmow") == {"batch_size": 8}


def test_list_and_plain_forms_still_work(tmp_path: Path):
    config = load_experiment(write(tmp_path, {"targets": ["cars=data/cars", "data/birds"]}))
    assert config.targets == {"cars": str((tmp_path / "data" / "cars").resolve()),
                              "birds": str((tmp_path / "data" / "birds").resolve())}
    # a mapping with a path only is the plain form
    config = load_experiment(write(tmp_path, {"targets": {"cars": {"path": "data/cars"}}}))
    assert config.targets == {"cars": str((tmp_path / "data" / "cars").resolve())}


@pytest.mark.parametrize("spec, key", [
    ({"path": "f", "finetune": {"optimiser": "adam"}}, "targets.fmow.finetune.optimiser"),
    ({"path": "f", "finetune": {"optimizer": "rmsprop"}}, "targets.fmow.finetune.optimizer"),
    ({"path": "f", "finetune": {"lr": -1}}, "targets.fmow.finetune.lr"),
    ({"path": "f", "finetune": {"moco": {"lr": "fast"}}}, "targets.fmow.finetune.moco.lr"),
    ({"path": "f", "finetune": {"seed": 3}}, "targets.fmow.finetune.seed"),  # the grid's
    ({"path": "f", "finetune": "adam"}, "targets.fmow.finetune"),
    ({"path": "f", "select": {"method": "random"}}, "targets.fmow.select.method"),
    ({"path": "f", "pretrain": {"epochs": 3}}, "targets.fmow.pretrain"),
    ({"finetune": {"optimizer": "adam"}}, "targets.fmow.path"),
    ({"path": {"a": 1}}, "targets.fmow.path"),
])
def test_a_bad_per_target_option_names_its_key(tmp_path: Path, spec: dict, key: str):
    refused(write(tmp_path, {"targets": {"fmow": spec}}), key)


@pytest.fixture
def grid(tmp_path: Path, two_part_pool: Path, stripes_target: Path) -> dict:
    return {"preset": "quick", "pool": [f"parts={two_part_pool}"],
            "targets": {"cars": str(stripes_target),
                        "fmow": {"path": str(stripes_target),
                                 "finetune": {"optimizer": "adam"}}},
            "methods": ["random"], "budgets": [0.5], "resolutions": [16]}


class Recording(FakePipeline):
    def __init__(self) -> None:
        super().__init__()
        self.finetuned: list[tuple[str, str, str]] = []

    def finetune(self, target, out, config, resume=False):
        # OUT/finetune/TARGET/MODE[-RES]/RUN/seedN
        self.finetuned.append((Path(out).parts[-4], target, config.optimizer))
        return super().finetune(target, out, config, resume)


def test_fmow_cells_fine_tune_with_adam_and_the_others_with_sgd(tmp_path: Path, grid: dict,
                                                               stripes_target: Path):
    fake = Recording()
    result = run(write(tmp_path, grid), tmp_path / "out", fake.steps())
    assert result.ran == 6  # per target: random init, entire pool, random 50 %
    by_target: dict[str, set[str]] = {}
    for target, path, optimizer in fake.finetuned:
        assert path == str(stripes_target)  # the path, not the mapping, reaches finetune
        by_target.setdefault(target, set()).add(optimizer)
    assert by_target == {"cars": {"sgd"}, "fmow": {"adam"}}
    assert {r["target"] for r in read_results(tmp_path / "out" / "results.csv")} == \
        {"cars", "fmow"}


def test_changing_a_targets_options_in_the_same_out_is_refused(tmp_path: Path, grid: dict):
    run(write(tmp_path, grid), tmp_path / "out", FakePipeline().steps())
    grid["targets"]["fmow"]["finetune"] = {"optimizer": "sgd"}
    with pytest.raises(CondPretrainError, match="another 'targets'"):
        run(write(tmp_path, grid, "changed.yaml"), tmp_path / "out", FakePipeline().steps())
