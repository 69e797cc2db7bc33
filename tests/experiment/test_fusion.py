"""``methods: [..., "fuse:A,B"]`` in an experiment grid: the parts scored once in the
grid's folders (shared with their own cells), the fusion fused from them as ``select``
fuses, costs that count shared work once, and the cluster steps in that order."""

from __future__ import annotations

import csv
import zlib
from pathlib import Path

import numpy as np
import pytest
from expfiles import refused, write_scored, write_yaml
from fake_steps import FakePipeline

from condpretrain import atomic
from condpretrain.config import SelectConfig, build_config, to_dict
from condpretrain.config.select import fused_methods
from condpretrain.data.sources import open_pool
from condpretrain.experiment import Layout, cells, load_experiment, method_label, read_results, run
from condpretrain.experiment.results import shared_work, total_device_hours
from condpretrain.experiment.runner import Experiment
from condpretrain.experiment.steps import COLLECT, SELECT, pending, step_graph, waves
from condpretrain.registry import SCORERS
from condpretrain.selection import reselect, select

A, B = SCORERS.names()[:2]  # two registered methods; which ones does not matter here
FUSION = f"fuse:{A},{B}"
OWN_SECONDS = 360.0
MODEL_HOURS = 0.5  # a cached model both parts use


class SavedScoresPipeline(FakePipeline):
    """select writes a real selection folder for a scoring method (its scores made up,
    a cost block naming one cached model both methods share); a fusion and every
    re-selection are the real ``select`` and ``reselect``."""

    def select(self, sources, target, out, config):
        out = Path(out)
        if fused_methods(config.method):
            self.calls["fuse"] += 1
            return select(sources, target, out, config)
        self.calls[config.method] += 1
        pool = open_pool(sources)
        scores = np.array([zlib.crc32(f"{config.method}{config.seed}{p}".encode()) % 997
                           for p in pool.paths], dtype=np.float32)
        write_scored(out, pool, scores)
        model = {"key": "target-model", "seconds": MODEL_HOURS * 3600, "processes": 1,
                 "device_hours": MODEL_HOURS}
        atomic.write_json(out / "selection.json", {
            "method": config.method, "parameters": to_dict(config), "seed": config.seed,
            "target": target, "pool_size": len(pool), "selected": 3,
            "timings": {"total": OWN_SECONDS},
            "cost": {"own_seconds": OWN_SECONDS, "processes": 1,
                     "own_device_hours": OWN_SECONDS / 3600, "shared": [model],
                     "seconds": OWN_SECONDS + model["seconds"],
                     "device_hours": OWN_SECONDS / 3600 + MODEL_HOURS}})
        return None

    def reselect(self, scores_dir, out, fraction=None, count=None):
        self.calls["reselect"] += 1
        return reselect(scores_dir, out, fraction=fraction, count=count)


@pytest.fixture
def grid_data(two_part_pool: Path, stripes_target: Path) -> dict:
    # B is fused but has no cells of its own: the grid scores it for the fusion only
    return {"preset": "quick", "pool": [f"parts={two_part_pool}"],
            "targets": {"warm": str(stripes_target)},
            "methods": [A, f"fuse:{A}, {B}"], "budgets": [0.1, 0.2], "resolutions": [16],
            "baselines": False}


def subset_paths(path: Path) -> list[str]:
    with open(path, newline="") as handle:
        return [row["path"] for row in csv.DictReader(handle)]


def test_a_fusion_cell_fuses_its_parts_saved_scores_as_select_does(grid_data, tmp_path: Path):
    out = tmp_path / "out"
    fake = SavedScoresPipeline()
    config = load_experiment(write_yaml(tmp_path / "exp.yaml", grid_data))
    assert config.methods == [A, FUSION]  # as `select --method` writes it
    run(config, out, fake.steps())
    # each part scored once (A's scores shared with A's own cells), the fusion once
    assert (fake.calls[A], fake.calls[B], fake.calls["fuse"]) == (1, 1, 1)
    assert fake.calls["reselect"] == 2 * 2  # two methods x two budgets
    layout = Layout(out)
    fused = layout.scores_dir("warm", FUSION, 0)
    assert ":" not in str(fused.relative_to(out)) and "," not in str(fused.relative_to(out))
    assert fused.parent.parent.name == f"fuse-{A}+{B}"
    record = atomic.read_json(fused / "selection.json")
    assert record["fused"] == {m: str(layout.scores_dir("warm", m, 0)) for m in (A, B)}

    rows = [r for r in read_results(out / "results.csv") if r["method"] == FUSION]
    assert sorted(r["budget"] for r in rows) == ["0.1", "0.2"]
    parts = ",".join(str(layout.scores_dir("warm", m, 0)) for m in (A, B))
    for budget in (0.1, 0.2):
        direct = tmp_path / f"direct-{budget}"
        select(config.pool, config.target_path("warm"), direct,
               build_config(SelectConfig, "quick", method=FUSION, fuse_from=parts,
                            fraction=budget))
        mine = layout.subset_dir("warm", FUSION, budget, 0)
        assert subset_paths(mine / "subset.csv") == subset_paths(direct / "subset.csv")
        assert np.array_equal(np.load(mine / "scores.npy"), np.load(direct / "scores.npy"))
        row = next(r for r in rows if float(r["budget"]) == budget)
        assert row["select_dir"] == layout.relative(mine)
        assert int(row["selected"]) == len(subset_paths(direct / "subset.csv"))


def test_a_fusion_is_charged_its_parts_and_totals_count_them_once(grid_data, tmp_path: Path):
    out = tmp_path / "out"
    run(write_yaml(tmp_path / "exp.yaml", grid_data), out, SavedScoresPipeline().steps())
    rows = read_results(out / "results.csv")
    own = {r["budget"]: r for r in rows if r["method"] == A}
    fusion = {r["budget"]: r for r in rows if r["method"] == FUSION}
    layout = Layout(out)
    key = {m: layout.relative(layout.scores_dir("warm", m, 0)) for m in (A, B, FUSION)}
    for budget, row in fusion.items():
        shared = shared_work(row)
        assert set(shared) == {*key.values(), "target-model"}  # the parts' work, by name
        assert shared[key[A]] == shared[key[B]] == pytest.approx(OWN_SECONDS / 3600)
        assert shared[key[A]] == shared_work(own[budget])[key[A]]  # the key A's rows name
        assert shared["target-model"] == MODEL_HOURS
        # what is the row's own: only its re-selection (seconds)
        pick = float(row["select_device_hours"]) - sum(shared.values())
        assert 0 <= pick < 10 / 3600
        # both parts' scorings, the model they share once, the fusion, the pick
        assert float(row["select_seconds"]) == pytest.approx(
            2 * OWN_SECONDS + MODEL_HOURS * 3600, abs=10)
    once = total_device_hours(rows)["select"]
    picks = sum(float(r["select_device_hours"]) - sum(shared_work(r).values()) for r in rows)
    assert once == pytest.approx(2 * OWN_SECONDS / 3600 + MODEL_HOURS
                                 + shared_work(fusion["0.1"])[key[FUSION]] + picks, rel=1e-6)
    assert total_device_hours(rows, once=False)["select"] > 3 * once


def test_a_grid_fuses_one_method_over_two_features(grid_data, tmp_path: Path):
    """``methods: [knn@classic, ..., "fuse:knn@classic,knn@classic:layout+gradients"]``: each
    view scored on its features in a folder of its own, then fused like any fusion."""
    views = ["knn@classic", "knn@classic:layout+gradients"]
    fusion = "fuse:" + ",".join(views)
    grid_data["methods"] = [views[0], fusion]
    grid_data["select"] = {"features": "target"}  # a method's own features win
    out = tmp_path / "out"
    fake = SavedScoresPipeline()
    config = load_experiment(write_yaml(tmp_path / "exp.yaml", grid_data))
    run(config, out, fake.steps())
    assert (fake.calls["knn"], fake.calls["fuse"]) == (2, 1)
    layout = Layout(out)
    folders = [layout.scores_dir("warm", view, 0) for view in views]
    assert [f.parent.parent.name for f in folders] == ["knn@classic",
                                                      "knn@classic-layout+gradients"]
    for view, folder in zip(views, folders, strict=True):
        parameters = atomic.read_json(folder / "selection.json")["parameters"]
        assert (parameters["method"], parameters["features"]) == tuple(view.split("@"))
    fused = layout.scores_dir("warm", fusion, 0)
    assert fused.parent.parent.name == "fuse-knn@classic+knn@classic-layout+gradients"
    assert atomic.read_json(fused / "selection.json")["fused"] == \
        {view: str(folder) for view, folder in zip(views, folders, strict=True)}
    assert {r["method"] for r in read_results(out / "results.csv")} == {views[0], fusion}
    assert method_label(fusion) == ("Fuse (k-NN (emb.) on classic + k-NN (emb.) on "
                                    "classic:layout+gradients)")


def test_features_that_name_a_path_get_a_hashed_folder(tmp_path: Path):
    layout = Layout(tmp_path)
    near = layout.scores_dir("t", "knn@checkpoint:/models/a.pt", 0).parent.parent.name
    other = layout.scores_dir("t", "knn@checkpoint:/models/b.pt", 0).parent.parent.name
    assert near.startswith("knn@h") and "/" not in near and near != other


def test_fusion_labels_name_the_parts():
    assert method_label(FUSION) == f"Fuse ({method_label(A)} + {method_label(B)})"


def test_the_fusion_select_step_needs_its_parts(grid_data, tmp_path: Path):
    config = load_experiment(write_yaml(tmp_path / "exp.yaml", grid_data))
    layout = Layout(tmp_path / "out")
    graph = step_graph(layout, cells(config))
    ids = {m: f"select:{layout.relative(layout.scores_dir('warm', m, 0))}" for m in (A, B, FUSION)}
    selects = {step.id: step for step in graph.values() if step.kind == SELECT}
    assert set(selects) == set(ids.values())
    assert set(selects[ids[FUSION]].needs) == {ids[A], ids[B]}
    # B has no cells of its own: scored for the fusion, no budget re-selected
    assert selects[ids[B]].budgets == [] and selects[ids[B]].method == B
    assert selects[ids[A]].budgets == [0.1, 0.2] and selects[ids[FUSION]].budgets == [0.1, 0.2]
    pretrain = next(s for s in graph.values() if s.kind == "pretrain" and s.cell.method == FUSION)
    assert pretrain.needs == (ids[FUSION],)


def test_steps_run_one_by_one_give_the_local_table(grid_data, tmp_path: Path):
    """What a cluster does: every step in dependency order, each a fresh runner."""
    config = load_experiment(write_yaml(tmp_path / "exp.yaml", grid_data))
    out = tmp_path / "steps"
    fake = SavedScoresPipeline()
    Experiment(config, out).prepare()
    for round_ in waves(pending(config, Layout(out))):
        for step in round_:
            if step.kind != COLLECT:
                Experiment(config, out, fake.steps()).run_step(step)
    assert (fake.calls[A], fake.calls[B], fake.calls["fuse"]) == (1, 1, 1)
    Experiment(config, out, FakePipeline().steps()).run_step(
        next(s for s in step_graph(Layout(out), cells(config)).values() if s.kind == COLLECT))
    local = tmp_path / "local"
    run(config, local, SavedScoresPipeline().steps())
    stepped, ran = read_results(out / "results.csv"), read_results(local / "results.csv")
    assert [(r["method"], r["budget"], r["select_dir"]) for r in stepped] == \
        [(r["method"], r["budget"], r["select_dir"]) for r in ran]
    for a, b in zip(stepped, ran, strict=True):
        assert subset_paths(out / a["select_dir"] / "subset.csv") == \
            subset_paths(local / b["select_dir"] / "subset.csv")


@pytest.mark.parametrize("methods, says", [
    ([f"fuse:{A},kmeans"], "unknown method 'kmeans' to fuse"),
    ([f"fuse:{A}"], "fuse two or more different methods"),
    ([f"fuse:{A},{A}"], "fuse two or more different methods"),
    ([f"fuse:{A},fuse:{B}"], "unknown method"),
    ([FUSION, f"fuse:{A}, {B}"], "repeated values"),
])
def test_a_bad_fusion_names_the_methods_key(tmp_path: Path, methods: list, says: str):
    path = write_yaml(tmp_path / "bad.yaml", {"pool": "p", "targets": {"t": "x"},
                                              "methods": methods})
    assert says in refused(path, "methods")


def test_fuse_from_is_the_grids_to_set(tmp_path: Path):
    path = write_yaml(tmp_path / "bad.yaml", {"pool": "p", "targets": {"t": "x"},
                                              "select": {"fuse_from": "a,b"}})
    assert "set per cell" in refused(path, "select.fuse_from")
    # fuse_k is the experiment's to choose
    fine = write_yaml(tmp_path / "ok.yaml", {"pool": "p", "targets": {"t": "x"},
                                             "methods": [FUSION], "select": {"fuse_k": 10}})
    assert load_experiment(fine).select == {"fuse_k": 10.0}


def test_the_report_shows_a_fusion_by_its_parts(grid_data, tmp_path: Path):
    from condpretrain.report import report

    out = tmp_path / "out"
    run(write_yaml(tmp_path / "exp.yaml", grid_data), out, SavedScoresPipeline().steps())
    markdown = report(out).markdown.read_text()
    assert method_label(FUSION) in markdown and FUSION not in markdown
