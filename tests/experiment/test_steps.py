"""The grid as cluster steps: dependencies, shared work once, finished work skipped,
resources per kind from the experiment file."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import yaml
from expfiles import refused, write_yaml
from fake_steps import FakePipeline

from condpretrain.experiment import Layout, cells, load_experiment, read_results, run
from condpretrain.experiment.launch import job_parameters
from condpretrain.experiment.runner import Experiment
from condpretrain.experiment.slurm_schema import StepResources, slurm_config
from condpretrain.experiment.steps import (
    COLLECT,
    FINETUNE,
    PRETRAIN,
    SELECT,
    Step,
    pending,
    resources,
    step_graph,
    waves,
)


@pytest.fixture
def grid_file(tmp_path: Path, two_part_pool: Path, stripes_target: Path) -> Path:
    return write_yaml(tmp_path / "exp.yaml", {
        "preset": "quick", "pool": [f"parts={two_part_pool}"],
        "targets": {"warm": str(stripes_target), "again": str(stripes_target)},
        "methods": ["random", "domain-classifier"], "budgets": [0.1, 0.2],
        "resolutions": [16], "seeds": [0],
        "slurm": {"partition": "gpu", "account": "lab", "sbatch": {"constraint": "volta32gb"},
                  "select": {"gpus": 1, "cpus": 4, "time": 30},
                  "pretrain": {"gpus": 8, "cpus": 10, "time": 4320, "mem": 480}},
    })


def by_kind(graph: dict[str, Step], kind: str) -> list[Step]:
    return [step for step in graph.values() if step.kind == kind]


def test_graph_shares_work_and_orders_needs(grid_file: Path, tmp_path: Path):
    config = load_experiment(grid_file)
    grid = cells(config)
    graph = step_graph(Layout(tmp_path / "out"), grid)
    # one scoring per (target, method, seed): 2 x 2, its budgets re-selected in the same job
    selects = by_kind(graph, SELECT)
    assert len(selects) == 4 and all(step.budgets == [0.1, 0.2] for step in selects)
    # subset runs per (target, method, budget); the entire pool once for both targets
    pretrains = by_kind(graph, PRETRAIN)
    assert len(pretrains) == 2 * 2 * 2 + 1
    entire = [step for step in pretrains if step.cell.method == "entire-pool"]
    assert len(entire) == 1 and {c.target for c in entire[0].cells} == {"warm", "again"}
    assert entire[0].needs == ()
    finetunes = by_kind(graph, FINETUNE)
    assert len(finetunes) == len(grid) == 2 * (1 + 1 + 4)
    assert sum(step.needs == (entire[0].id,) for step in finetunes) == 2
    scratch = [step for step in finetunes if step.cell.method == "random-init"]
    assert [step.needs for step in scratch] == [(), ()]
    subset_run = next(step for step in pretrains if step.cell.method == "domain-classifier"
                      and step.cell.target == "warm")
    assert subset_run.needs == ("select:select/warm/domain-classifier/seed0/scores",)
    # one target's scorings one after another (they share its cached models)
    chained = {step.cell.method: step.needs for step in selects if step.cell.target == "warm"}
    assert chained == {"random": (), "domain-classifier": ("select:select/warm/random/seed0/scores",)}
    (collect,) = by_kind(graph, COLLECT)
    assert sorted(collect.needs) == sorted(step.id for step in finetunes)
    position = {key: i for i, key in enumerate(graph)}
    assert all(position[need] < position[key] for key, step in graph.items()
               for need in step.needs)


def test_waves_wait_only_for_earlier_rounds(grid_file: Path, tmp_path: Path):
    graph = step_graph(Layout(tmp_path / "out"), cells(load_experiment(grid_file)))
    rounds = waves(graph)
    assert sum(len(r) for r in rounds) == len(graph)
    seen: set[str] = set()
    for round_ in rounds:
        assert all(need in seen for step in round_ for need in step.needs)
        seen |= {step.id for step in round_}
    # first round: what needs nothing (both targets' first scoring, the entire pool, scratch)
    assert sorted(step.kind for step in rounds[0]) == \
        [FINETUNE, FINETUNE, PRETRAIN, SELECT, SELECT]
    assert [step.kind for step in rounds[-1]] == [COLLECT]


def test_finished_steps_are_not_pending(grid_file: Path, tmp_path: Path):
    out = tmp_path / "out"
    config = load_experiment(grid_file)
    layout = Layout(out)
    assert len(pending(config, layout)) == len(step_graph(layout, cells(config)))
    run(config, out, FakePipeline().steps())
    assert pending(config, layout) == {}

    rows = read_results(out / "results.csv")
    lost = [r for r in rows if r["method"] == "domain-classifier" and r["budget"] == "0.2"
            and r["target"] == "warm"]
    entire = next(r for r in rows if r["method"] == "entire-pool" and r["target"] == "warm")
    rewrite(out / "results.csv", [r for r in rows if r not in (*lost, entire)])
    # a lost row whose artefacts are all there: only collecting is left
    assert list(pending(config, layout)) == [COLLECT]
    # a killed pre-training: it, its fine-tuning, then collect; the selection is done
    (out / lost[0]["pretrain_dir"] / "result.json").unlink()
    shutil.rmtree(out / lost[0]["finetune_dir"])
    left = pending(config, layout)
    pretrain_id, finetune_id = f"pretrain:{lost[0]['pretrain_dir']}", \
        f"finetune:{lost[0]['finetune_dir']}"
    assert list(left) == [pretrain_id, finetune_id, COLLECT]
    assert left[pretrain_id].needs == () and left[finetune_id].needs == (pretrain_id,)
    assert left[COLLECT].needs == (finetune_id,)


def rewrite(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_resources_per_kind_from_the_file(grid_file: Path, tmp_path: Path):
    config = load_experiment(grid_file)
    slurm = slurm_config(config)
    graph = step_graph(Layout(tmp_path / "out"), cells(config))
    kinds = {step.kind: step for step in graph.values()}
    assert resources(kinds[PRETRAIN], slurm) == StepResources(gpus=8, cpus=10, time=4320, mem=480)
    assert resources(kinds[SELECT], slurm) == StepResources(gpus=1, cpus=4, time=30)
    assert resources(kinds[FINETUNE], slurm) == StepResources()  # not set: the defaults
    assert resources(kinds[COLLECT], slurm) == StepResources(gpus=0, cpus=4, time=30)

    params = job_parameters("exp", kinds[PRETRAIN], slurm, ["11", "12"])
    assert params["tasks_per_node"] == params["gpus_per_node"] == 8  # a process per GPU
    assert params["cpus_per_task"] == 10 and params["timeout_min"] == 4320
    assert params["mem_gb"] == 480 and params["nodes"] == 1
    assert params["slurm_partition"] == "gpu" and params["slurm_account"] == "lab"
    assert params["slurm_dependency"] == "afterok:11:12"
    assert params["slurm_additional_parameters"] == {"constraint": "volta32gb",
                                                     "kill-on-invalid-dep": "yes"}
    assert "slurm_qos" not in params  # unset: not asked for
    collect = job_parameters("exp", kinds[COLLECT], slurm, [])
    assert collect["tasks_per_node"] == 1 and collect["gpus_per_node"] == 0
    assert "slurm_dependency" not in collect and "mem_gb" not in collect


@pytest.mark.parametrize("slurm, key", [
    ({"partitions": "gpu"}, "slurm.partitions"),
    ({"pretrain": {"gpus": -1}}, "slurm.pretrain.gpus"),
    ({"pretrain": {"gpu": 8}}, "slurm.pretrain.gpu"),
    ({"finetune": {"time": 1.5}}, "slurm.finetune.time"),
    ({"select": {"mem": 0}}, "slurm.select.mem"),
    ({"select": "big"}, "slurm.select"),
    ({"requeues": "often"}, "slurm.requeues"),
    ({"sbatch": {"dependency": "afterok:1"}}, "slurm.sbatch.dependency"),
    ({"sbatch": {"constraint": ["a", "b"]}}, "slurm.sbatch.constraint"),
    ("gpu", "slurm"),
])
def test_bad_slurm_section_names_the_key(tmp_path: Path, slurm, key: str):
    path = write_yaml(tmp_path / "bad.yaml", {"pool": "p", "targets": {"t": "x"}, "slurm": slurm})
    refused(path, key)


def test_slurm_section_is_neutral_and_survives_the_saved_copy(grid_file: Path, tmp_path: Path):
    out = tmp_path / "out"
    data = yaml.safe_load(grid_file.read_text())
    data["slurm"]["folder"] = "logs"  # relative: against the file's folder, like every path
    config = load_experiment(write_yaml(tmp_path / "exp.yaml", data))
    assert slurm_config(config).folder == str((tmp_path / "logs").resolve())
    Experiment(config, out).prepare()
    # what a job reads back is the experiment it was submitted with
    assert load_experiment(out / "experiment.yaml") == config
    # where jobs run changes nothing they compute: another slurm section may resume
    data["slurm"] = {"partition": "other", "pretrain": {"gpus": 2}}
    other = load_experiment(write_yaml(tmp_path / "other.yaml", data))
    Experiment(other, out).prepare()
    assert slurm_config(load_experiment(out / "experiment.yaml")).partition == "other"
