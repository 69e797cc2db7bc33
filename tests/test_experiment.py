from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import yaml
from fake_steps import FakePipeline

from condpretrain import api
from condpretrain.errors import CondPretrainError
from condpretrain.experiment import Steps, cells, load_experiment, read_results, run


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def grid_file(tmp_path: Path, two_part_pool: Path, stripes_target: Path) -> Path:
    return write_yaml(tmp_path / "exp.yaml", {
        "name": "tiny", "preset": "quick",
        "pool": [f"parts={two_part_pool}"],
        "targets": {"warm": str(stripes_target), "again": str(stripes_target)},
        "methods": ["random", "domain-classifier"],
        "budgets": [0.1, "20%"],
        "resolutions": [16, 8],
        "seeds": [0, 1],
    })


def test_grid_shares_scores_and_entire_pool_pretraining(grid_file: Path, tmp_path: Path):
    fake = FakePipeline()
    result = run(grid_file, tmp_path / "out", fake.steps())
    # per target and seed: 1 random-init + 2 res x (1 entire pool + 2 budgets x 2 methods)
    assert len(result.rows) == 2 * 2 * (1 + 2 * (1 + 4)) == 44
    assert result.ran == 44 and result.skipped == 0
    # one scoring per (target, method, seed); every budget re-selects from it
    assert fake.calls["select"] == 2 * 2 * 2
    assert fake.calls["reselect"] == 2 * 2 * 2 * 2
    # subset pre-training per cell; the entire pool once per (res, seed) for both targets
    assert fake.calls["pretrain"] == 2 * 2 * 2 * 2 * 2 + 2 * 2
    assert fake.calls["finetune"] == 44
    rows = read_results(tmp_path / "out" / "results.csv")
    assert len(rows) == 44
    cell = next(r for r in rows if r["method"] == "random" and r["budget"] == "0.2")
    assert float(cell["select_seconds"]) == pytest.approx(4.0)  # scoring 3.5 + pick 0.5
    assert float(cell["pretrain_device_hours"]) == pytest.approx(0.1)
    assert cell["selected"] and cell["pool_size"] == "96"
    scratch = next(r for r in rows if r["method"] == "random-init")
    assert scratch["budget"] == "0" and scratch["pretrain_device_hours"] == "0"
    assert (tmp_path / "out" / "experiment.yaml").is_file()


def test_resume_skips_finished_cells_and_reuses_artefacts(grid_file: Path, tmp_path: Path):
    out = tmp_path / "out"
    run(grid_file, out, FakePipeline().steps())
    again = FakePipeline()
    result = run(grid_file, out, again.steps())
    assert result.ran == 0 and result.skipped == 44 and sum(again.calls.values()) == 0

    # Lose two rows (as if killed before recording them) and leave one pre-training
    # half done: only the missing work runs, the killed run continues from its checkpoint.
    rows = read_results(out / "results.csv")
    lost = [r for r in rows if r["method"] == "domain-classifier" and r["seed"] == "1"][:2]
    kept = [r for r in rows if r not in lost]
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    killed = out / lost[0]["pretrain_dir"]
    (killed / "result.json").unlink()  # killed mid pre-training: no fine-tune yet
    shutil.rmtree(out / lost[0]["finetune_dir"])
    third = FakePipeline()
    result = run(grid_file, out, third.steps())
    assert result.ran == 2 and result.skipped == 42
    # the second lost row had all its artefacts: read back, nothing recomputed
    assert third.calls == {"pretrain": 1, "finetune": 1}
    assert third.resumed == [str(killed)]
    assert len(read_results(out / "results.csv")) == 44


def test_cells_order_and_baselines_off(tmp_path: Path, two_part_pool: Path, stripes_target: Path):
    config = load_experiment(write_yaml(tmp_path / "e.yaml", {
        "pool": str(two_part_pool), "targets": [str(stripes_target)],
        "methods": ["clustering-min"], "budgets": [0.5], "resolutions": [16],
        "baselines": False}))
    grid = cells(config)
    assert [(c.method, c.budget, c.resolution) for c in grid] == [("clustering-min", 0.5, 16)]
    assert config.targets == {stripes_target.name: str(stripes_target)}


@pytest.mark.parametrize("data, key", [
    ({"budget": [0.1]}, "budget"),
    ({"budgets": [1.5]}, "budgets"),
    ({"budgets": "lots"}, "budgets"),
    ({"methods": ["kmeans"]}, "methods"),
    ({"resolutions": [0]}, "resolutions"),
    ({"seeds": ["zero"]}, "seeds"),
    ({"modes": ["simclr"]}, "modes"),
    ({"preset": "fast"}, "preset"),
    ({"baselines": ["half"]}, "baselines"),
    ({"pretrain": {"epoch": 3}}, "pretrain.epoch"),
    ({"finetune": {"moco": {"learning_rate": 1}}}, "finetune.moco.learning_rate"),
    ({"select": {"fraction": 0.5}}, "select.fraction"),
    ({"select": {"batch_size": -1}}, "select"),
    ({"pool": None}, "pool"),
    ({"targets": {}}, "targets"),
])
def test_malformed_experiment_names_the_key(tmp_path: Path, data: dict, key: str):
    base = {"pool": "pool", "targets": {"t": "target"}}
    path = write_yaml(tmp_path / "bad.yaml", {**base, **data})
    with pytest.raises(CondPretrainError) as info:
        load_experiment(path)
    message = str(info.value)
    assert key in message and str(path) in message and "\n" not in message


def test_not_yaml_and_missing_file(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("pool: [unclosed\n")
    with pytest.raises(CondPretrainError, match="not valid YAML"):
        load_experiment(bad)
    with pytest.raises(CondPretrainError, match="not found"):
        load_experiment(tmp_path / "missing.yaml")


def test_relative_paths_resolve_against_the_file(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    config = load_experiment(write_yaml(tmp_path / "sub" / "e.yaml",
                                        {"pool": ["a=../pool"], "targets": {"t": "data/t"}}))
    assert config.pool == [f"a={(tmp_path / 'pool').resolve()}"]
    assert config.targets["t"] == str((tmp_path / "sub" / "data" / "t").resolve())


def test_cli_run_error_is_one_line(tmp_path: Path, capsys):
    from condpretrain.cli import main

    path = write_yaml(tmp_path / "bad.yaml", {"pool": "p", "targets": {"t": "x"}, "budgets": [2]})
    assert main(["run", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "budgets" in err and len(err.splitlines()) == 1


def _pipeline_installed() -> bool:
    try:
        Steps.default()
    except CondPretrainError:
        return False
    return True


@pytest.mark.skipif(not _pipeline_installed(),
                    reason="the select/pretrain/finetune APIs are not installed yet")
def test_tiny_grid_end_to_end(tmp_path: Path, two_part_pool: Path, stripes_target: Path):
    """Two cells through the real pipeline on 24 px images, then the report."""
    path = write_yaml(tmp_path / "exp.yaml", {
        "preset": "quick", "pool": [str(two_part_pool)], "targets": {"warm": str(stripes_target)},
        "methods": ["random"], "budgets": [0.25], "resolutions": [16],
        "baselines": ["random-init"], "seeds": [0],
        "select": {"filter_resolution": 16},
        "pretrain": {"epochs": 1, "batch_size": 16},
        "finetune": {"epochs": 1, "batch_size": 16, "resolution": 16},
    })
    out = tmp_path / "out"
    result = api.run(path, out)
    assert result.ran == 2
    rows = read_results(out / "results.csv")
    assert [r["method"] for r in rows] == ["random-init", "random"]
    for r in rows:
        assert 0 <= float(r["top1"]) <= 100 and float(r["finetune_seconds"]) > 0
    assert int(rows[1]["selected"]) == 24 and float(rows[1]["pretrain_device_hours"]) > 0
    assert api.run(path, out).ran == 0
    written = api.report(out)
    assert "Random Init." in written.markdown.read_text()


def test_same_folder_other_settings_is_refused(grid_file: Path, tmp_path: Path):
    out = tmp_path / "out"
    run(grid_file, out, FakePipeline().steps())
    data = yaml.safe_load(grid_file.read_text())
    grown = write_yaml(tmp_path / "grown.yaml", {**data, "seeds": [0, 1, 2]})
    assert run(grown, out, FakePipeline().steps()).ran == 22  # one more seed: more cells
    changed = write_yaml(tmp_path / "changed.yaml", {**data, "pretrain": {"epochs": 9}})
    with pytest.raises(CondPretrainError, match="another 'pretrain'"):
        run(changed, out, FakePipeline().steps())
