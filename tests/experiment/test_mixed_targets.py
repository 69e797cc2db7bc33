"""``targets: {cars+birds: {mix: {cars: 0.7, birds: 0.3}}}`` in an experiment grid: one
subset per (mix, method, budget, seed), merged from its parts' own saved scores as
``select --target ... --mix`` merges, pre-trained on once and fine-tuned on each part
(with that part's options), a row per part naming the mix in ``subset_for``."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pytest
from expfiles import refused
from imagegen import make_target
from mixfiles import (
    FUSION,
    MIX,
    OWN_SECONDS,
    POOL_SIZE,
    SHARES,
    A,
    B,
    MixPipeline,
    subset_rows,
    write_yaml,
)

from condpretrain import atomic
from condpretrain.errors import CondPretrainError
from condpretrain.experiment import Layout, cells, load_experiment, read_results, run
from condpretrain.experiment.grid import Cell
from condpretrain.experiment.results import (
    KEY_COLUMNS,
    SHARED_MARK,
    SUBSET_FOR,
    as_shown,
    method_label,
    row_key,
    shared_work,
    total_device_hours,
)
from condpretrain.experiment.runner import Experiment
from condpretrain.experiment.steps import (
    COLLECT,
    PRETRAIN,
    SELECT,
    pending,
    step_graph,
    waves,
)
from condpretrain.multi_target import quotas


@pytest.fixture
def birds_target(tmp_path: Path) -> Path:
    """A second target (the fakes only name it, but a grid lists a target whose methods
    need labels, to check it has them)."""
    return make_target(tmp_path / "birds", {"a": "rings", "b": "stripes"}, train=2, test=1)


@pytest.fixture
def grid_data(two_part_pool: Path, stripes_target: Path, birds_target: Path) -> dict:
    return {"preset": "quick", "pool": [f"parts={two_part_pool}"],
            "targets": {"cars": str(stripes_target),
                        "birds": {"path": str(birds_target), "finetune": {"optimizer": "adam"}},
                        MIX: {"mix": dict(SHARES)}},
            "methods": [A], "budgets": [0.1, 0.2], "resolutions": [16], "baselines": False}


@pytest.fixture
def pipeline(stripes_target: Path, birds_target: Path) -> MixPipeline:
    return MixPipeline({str(stripes_target): "stripes", str(birds_target): "noise"})


def mix_rows(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [r for r in rows if r[SUBSET_FOR]]


# --------------------------------------------------------------------------- the file


def test_a_mix_is_parsed_with_its_shares(grid_data, tmp_path: Path):
    config = load_experiment(write_yaml(tmp_path / "exp.yaml", grid_data))
    assert config.mix_of(MIX) == SHARES and list(config.mix_of(MIX)) == ["cars", "birds"]
    assert config.mix_of("cars") is None
    with pytest.raises(CondPretrainError, match=re.escape(f"targets.{MIX}: a mix of targets")):
        config.target_path(MIX)


@pytest.mark.parametrize("mix, key, says", [
    ({"mix": {"cars": 1.0}}, f"targets.{MIX}.mix", "name two or more, got 1"),
    ({"mix": {"cars": 0.5, "dogs": 0.5}}, f"targets.{MIX}.mix.dogs", "not a target of the file"),
    ({"mix": {"cars": 0.5, "other": 0.5}}, f"targets.{MIX}.mix.other",
     "a mix of targets, not a target"),
    ({"mix": {"cars": 0.5, "birds": 0.6}}, f"targets.{MIX}.mix", "must sum to 1, got 1.1"),
    ({"mix": {"cars": 1.5, "birds": -0.5}}, f"targets.{MIX}.mix", "must be in (0, 1]"),
    ({"mix": {"cars": "half", "birds": 0.5}}, f"targets.{MIX}.mix.cars", "expected a number"),
    ({"mix": {"cars": True, "birds": 0.5}}, f"targets.{MIX}.mix.cars", "expected a number"),
    ({"mix": [0.5, 0.5]}, f"targets.{MIX}.mix", "expected a mapping of target: share"),
    ({"mix": {"cars": 0.5, "birds": 0.5}, "path": "x"}, f"targets.{MIX}.path",
     "a mix of targets has only 'mix'"),
    ({"mix": {"cars": 0.5, "birds": 0.5}, "finetune": {"lr": 0.1}},
     f"targets.{MIX}.finetune", "a mix of targets has only 'mix'"),
])
def test_a_bad_mix_is_one_line_naming_its_key(tmp_path: Path, mix: dict, key: str, says: str):
    targets = {"cars": "c", "birds": "b", MIX: mix,
               "other": {"mix": {"cars": 0.5, "birds": 0.5}}}
    path = write_yaml(tmp_path / "bad.yaml", {"pool": "p", "targets": targets})
    assert says in refused(path, key)


def test_a_mix_needs_the_top_policy(tmp_path: Path):
    targets = {"cars": "c", "birds": "b", MIX: {"mix": {"cars": 0.5, "birds": 0.5}}}
    path = write_yaml(tmp_path / "bad.yaml", {"pool": "p", "targets": targets,
                                              "select": {"policy": "sample"}})
    assert f"targets.{MIX}" in refused(path, "select.policy")
    # without a mix, the policy is the file's to choose
    del targets[MIX]
    fine = write_yaml(tmp_path / "ok.yaml", {"pool": "p", "targets": targets,
                                             "select": {"policy": "sample"}})
    assert load_experiment(fine).select == {"policy": "sample"}


# --------------------------------------------------------------------------- the grid


def test_a_mix_has_a_row_per_part_and_no_baselines(grid_data, tmp_path: Path):
    config = load_experiment(write_yaml(tmp_path / "exp.yaml", {**grid_data, "baselines": True}))
    grid = cells(config)
    mixed = [c for c in grid if c.subset_for]
    assert [(c.target, c.budget) for c in mixed] == [
        ("cars", 0.1), ("birds", 0.1), ("cars", 0.2), ("birds", 0.2)]
    assert all(c.subset_for == MIX and c.method == A and c.selected_for == MIX for c in mixed)
    assert not any(c.target == MIX for c in grid)  # the mix fine-tunes as its parts
    own = [c for c in grid if not c.subset_for]
    assert len(own) == 2 * (2 + 2)  # each part: two baselines, two budgets
    assert len({c.key for c in grid}) == len(grid)  # subset_for tells the rows apart
    assert mixed[0].key[-1] == MIX and own[0].key[-1] == ""
    assert f"(subset for {MIX})" in mixed[0].label


def test_the_layout_shares_a_mix_pretraining_and_keeps_its_finetunes_apart(tmp_path: Path):
    layout = Layout(tmp_path)
    cars, birds = (Cell(t, "supervised", 16, 0.1, A, 0, subset_for=MIX) for t in ("cars", "birds"))
    own = Cell("cars", "supervised", 16, 0.1, A, 0)
    assert layout.pretrain_dir(cars) == layout.pretrain_dir(birds) == \
        tmp_path / "pretrain" / "supervised-16" / MIX / f"{A}-b10" / "seed0"
    assert layout.pretrain_dir(own) != layout.pretrain_dir(cars)
    assert layout.finetune_dir(cars) == \
        tmp_path / "finetune" / "cars" / "supervised-16" / f"subset-for-{MIX}" / f"{A}-b10" / "seed0"
    assert len({layout.finetune_dir(c) for c in (cars, birds, own)}) == 3
    assert layout.subset_dir(MIX, A, 0.1, 0) == tmp_path / "select" / MIX / A / "seed0" / "b10"


def test_the_mix_select_step_needs_its_parts_scorings(grid_data, tmp_path: Path):
    config = load_experiment(write_yaml(tmp_path / "exp.yaml", grid_data))
    layout = Layout(tmp_path / "out")
    graph = step_graph(layout, cells(config))
    scoring = {t: f"select:{layout.relative(layout.scores_dir(t, A, 0))}" for t in SHARES}
    merging = f"select:{layout.relative(layout.selections_dir(MIX, A, 0))}"
    selects = {s.id: s for s in graph.values() if s.kind == SELECT}
    assert set(selects) == {*scoring.values(), merging}
    assert set(selects[merging].needs) == set(scoring.values())
    assert selects[merging].subset_for == MIX and selects[merging].budgets == [0.1, 0.2]
    # the parts re-select their own budgets only; the mix's cells are served, not re-selected
    for target in SHARES:
        assert selects[scoring[target]].budgets == [0.1, 0.2]
        assert any(c.subset_for == MIX for c in selects[scoring[target]].cells)
    pretrains = [s for s in graph.values() if s.kind == PRETRAIN and s.cell.subset_for]
    assert len(pretrains) == 2  # one per budget, serving both parts
    for step in pretrains:
        assert {c.target for c in step.cells} == set(SHARES)
        assert step.needs == (merging,)
    # a dry run's listing: the same graph of the cells still to do
    assert set(pending(config, layout)) == set(graph)
    # only the mix's rows to do: the parts are scored for it, none of their budgets picked
    only_mix = step_graph(layout, [c for c in cells(config) if c.subset_for])
    assert {only_mix[scoring[t]].budgets == [] for t in SHARES} == {True}
    assert only_mix[merging].budgets == [0.1, 0.2]


# --------------------------------------------------------------------------- running it


def test_a_mix_is_merged_once_pretrained_once_and_finetuned_per_part(
        grid_data, pipeline: MixPipeline, tmp_path: Path, birds_target: Path):
    out = tmp_path / "out"
    config = load_experiment(write_yaml(tmp_path / "exp.yaml", grid_data))
    result = run(config, out, pipeline.steps())
    calls = pipeline.calls
    # each part scored once (its own cells' scores), nothing scored for the mix
    assert calls[("select", "cars", A)] == calls[("select", "birds", A)] == 1
    assert not any(key[1] == MIX for key in calls if isinstance(key, tuple))
    assert calls["merge"] == 2  # one per budget
    assert calls["reselect"] == 2 * 2  # the parts' own budgets
    assert calls["pretrain"] == 2 * 2 + 2  # the parts' own subsets, then one per mix subset
    assert calls["finetune"] == 2 * 2 + 2 * 2
    layout = Layout(out)
    for budget in (0.1, 0.2):
        assert str(layout.subset_dir(MIX, A, budget, 0) / "subset.csv") in pipeline.subsets

    rows = read_results(out / "results.csv")
    assert len(rows) == result.ran == 8
    mixed = mix_rows(rows)
    assert sorted((r["target"], r["budget"]) for r in mixed) == [
        ("birds", "0.1"), ("birds", "0.2"), ("cars", "0.1"), ("cars", "0.2")]
    assert all(r[SUBSET_FOR] == MIX and r["method"] == A for r in mixed)
    for budget in ("0.1", "0.2"):
        pair = [r for r in mixed if r["budget"] == budget]
        assert len({r["select_dir"] for r in pair}) == len({r["pretrain_dir"] for r in pair}) == 1
        assert pair[0]["select_dir"] == layout.relative(layout.subset_dir(MIX, A, float(budget), 0))
        assert len({r["finetune_dir"] for r in pair}) == 2
        assert int(pair[0]["selected"]) == round(float(budget) * POOL_SIZE)
        own = next(r for r in rows if r["target"] == "cars" and r["budget"] == budget
                   and not r[SUBSET_FOR])
        assert own["pretrain_dir"] != pair[0]["pretrain_dir"]
    # each part fine-tunes with its own options: birds its adam, cars the default sgd
    optimizers = {r["target"]: pipeline.finetuned[str(out / r["finetune_dir"])] for r in mixed}
    assert optimizers == {"cars": "sgd", "birds": "adam"}


def test_the_mix_subset_has_each_parts_share(grid_data, pipeline: MixPipeline,
                                             tmp_path: Path):
    out = tmp_path / "out"
    run(write_yaml(tmp_path / "exp.yaml", grid_data), out, pipeline.steps())
    layout = Layout(out)
    for budget in (0.1, 0.2):
        folder = layout.subset_dir(MIX, A, budget, 0)
        record = atomic.read_json(folder / "selection.json")
        size = round(budget * POOL_SIZE)
        quota = dict(zip(SHARES, quotas(size, list(SHARES.values())), strict=True))
        assert quota["cars"] > quota["birds"] > 0  # 0.7 / 0.3 of the budget
        assert record["budget"] == record["selected"] == size
        assert record["targets"] == {t: load_experiment(
            tmp_path / "exp.yaml").target_path(t) for t in SHARES}
        for target, share in SHARES.items():
            part = record["per_target"][target]
            assert part["share_asked"] == share and part["quota"] == quota[target]
            assert part["taken"] == quota[target]  # the tops do not overlap: no refill
            assert part["folder"] == str(layout.scores_dir(target, A, 0))
        assert record["in_several_takes"] == 0
        rows = subset_rows(folder / "subset.csv")
        assert Counter(r["taken_by"] for r in rows) == quota
        # each part took from its own ranking: the pool part its scores put first
        assert all("stripes" in r["path"] for r in rows if r["taken_by"] == "cars")
        assert all("noise" in r["path"] for r in rows if r["taken_by"] == "birds")


def test_a_mix_row_is_charged_its_parts_and_totals_count_them_once(
        grid_data, pipeline: MixPipeline, tmp_path: Path):
    out = tmp_path / "out"
    run(write_yaml(tmp_path / "exp.yaml", grid_data), out, pipeline.steps())
    rows = read_results(out / "results.csv")
    layout = Layout(out)
    scoring = {t: layout.relative(layout.scores_dir(t, A, 0)) for t in SHARES}
    for row in mix_rows(rows):
        shared = shared_work(row)
        assert set(shared) == {*scoring.values(), row["select_dir"]}  # both scorings, the merge
        own = next(r for r in rows if r["target"] == row["target"] and not r[SUBSET_FOR])
        assert shared[scoring["cars"]] == pytest.approx(OWN_SECONDS / 3600)
        assert shared[scoring[row["target"]]] == shared_work(own)[scoring[row["target"]]]
        assert float(row["select_seconds"]) == pytest.approx(2 * OWN_SECONDS, abs=10)
        # the table keeps six significant digits
        assert float(row["select_device_hours"]) == pytest.approx(sum(shared.values()), rel=1e-5)
    merges = {r["select_dir"]: shared_work(r)[r["select_dir"]] for r in mix_rows(rows)}
    assert len(merges) == 2
    picks = sum(float(r["select_device_hours"]) - sum(shared_work(r).values())
                for r in rows if not r[SUBSET_FOR])
    once = total_device_hours(rows)
    # each scoring (0.1 h) once; abs: the rows' six digits add up to a few milliseconds
    assert once["select"] == pytest.approx(
        2 * OWN_SECONDS / 3600 + sum(merges.values()) + picks, abs=1e-5)
    assert total_device_hours(rows, once=False)["select"] > 1.9 * once["select"]
    # the shared pre-training is one run, though two rows name it
    pretrains = {r["pretrain_dir"]: float(r["pretrain_device_hours"]) for r in rows}
    assert once["pretrain"] == pytest.approx(sum(pretrains.values()))


def test_a_rerun_does_nothing_new(grid_data, pipeline: MixPipeline, stripes_target: Path,
                                  birds_target: Path, tmp_path: Path):
    out = tmp_path / "out"
    path = write_yaml(tmp_path / "exp.yaml", grid_data)
    first = read_results(run(path, out, pipeline.steps()).results_csv)
    again = MixPipeline(pipeline.prefer)
    result = run(path, out, again.steps())
    assert (result.ran, result.skipped) == (0, 8) and not again.calls
    # without the table, every row is rebuilt from the finished artefacts: still no work
    (out / "results.csv").unlink()
    rebuilt = run(path, out, again.steps())
    assert rebuilt.ran == 8 and not again.calls
    assert sorted(map(row_key, rebuilt.rows)) == sorted(map(row_key, first))
    assert pending(load_experiment(path), Layout(out)) == {}


def test_steps_run_one_by_one_give_the_local_table(grid_data, pipeline: MixPipeline,
                                                   tmp_path: Path):
    """What a cluster does: every step in dependency order, each a fresh runner."""
    config = load_experiment(write_yaml(tmp_path / "exp.yaml", grid_data))
    out = tmp_path / "steps"
    Experiment(config, out).prepare()
    saved = load_experiment(out / "experiment.yaml")  # what each job reads
    assert saved.mix_of(MIX) == SHARES and list(saved.mix_of(MIX)) == list(SHARES)
    for round_ in waves(pending(saved, Layout(out))):
        for step in round_:
            if step.kind != COLLECT:
                Experiment(saved, out, pipeline.steps()).run_step(step)
    assert pipeline.calls["merge"] == 2 and pipeline.calls["pretrain"] == 6
    collect = next(s for s in step_graph(Layout(out), cells(config)).values()
                   if s.kind == COLLECT)
    Experiment(config, out).run_step(collect)  # reads only: nothing left to compute
    local = tmp_path / "local"
    run(config, local, MixPipeline(pipeline.prefer).steps())
    stepped, ran = read_results(out / "results.csv"), read_results(local / "results.csv")
    assert [row_key(r) for r in stepped] == [row_key(r) for r in ran]
    for a, b in zip(stepped, ran, strict=True):
        assert (a["select_dir"], a["pretrain_dir"]) == (b["select_dir"], b["pretrain_dir"])
        assert subset_rows(out / a["select_dir"] / "subset.csv") == \
            subset_rows(local / b["select_dir"] / "subset.csv")


def test_a_mix_of_a_fusion_merges_each_parts_fused_scores(grid_data, pipeline: MixPipeline,
                                                          tmp_path: Path):
    out = tmp_path / "out"
    config = load_experiment(write_yaml(tmp_path / "exp.yaml",
                                        {**grid_data, "methods": [A, FUSION], "budgets": [0.1]}))
    run(config, out, pipeline.steps())
    for target in SHARES:  # each part's fusion fused once, its parts scored once
        assert [pipeline.calls[("select", target, m)] for m in (A, B, FUSION)] == [1, 1, 1]
    layout = Layout(out)
    record = atomic.read_json(layout.subset_dir(MIX, FUSION, 0.1, 0) / "selection.json")
    assert record["method"] == FUSION
    assert {t: p["folder"] for t, p in record["per_target"].items()} == {
        t: str(layout.scores_dir(t, FUSION, 0)) for t in SHARES}
    rows = [r for r in mix_rows(read_results(out / "results.csv")) if r["method"] == FUSION]
    assert sorted(r["target"] for r in rows) == ["birds", "cars"]
    assert len({r["pretrain_dir"] for r in rows}) == 1


# --------------------------------------------------------------------------- the table


def test_the_report_shows_a_mix_subset_apart_from_the_parts_own(grid_data, pipeline,
                                                                tmp_path: Path):
    out = tmp_path / "out"
    run(write_yaml(tmp_path / "exp.yaml", grid_data), out, pipeline.steps())
    rows = read_results(out / "results.csv")
    shown = as_shown(rows)
    assert {r["method"] for r in shown} == {A, f"{A}{SHARED_MARK}{MIX}"}
    assert [r["method"] for r in rows].count(A) == len(rows)  # the table's own rows untouched
    assert method_label(f"{A}{SHARED_MARK}{MIX}") == f"{method_label(A)}, subset for {MIX}"
    # a table cell (target, budget, method) holds one row per seed, never the two subsets
    cells_shown = Counter((r["target"], r["budget"], r["method"]) for r in shown)
    assert set(cells_shown.values()) == {1}


def test_a_table_written_before_subset_for_still_reads_and_resumes(
        grid_data, pipeline: MixPipeline, tmp_path: Path):
    out = tmp_path / "out"
    data = {**grid_data, "targets": {"cars": grid_data["targets"]["cars"]}}
    path = write_yaml(tmp_path / "exp.yaml", data)
    run(path, out, pipeline.steps())
    table = out / "results.csv"
    with open(table, newline="") as handle:  # the table as it was written before
        old = [{k: v for k, v in r.items() if k != SUBSET_FOR} for r in csv.DictReader(handle)]
    with open(table, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(old[0]))
        writer.writeheader()
        writer.writerows(old)
    rows = read_results(table)
    assert len(rows) == 2 and all(row_key(r)[-1] == "" for r in rows)
    assert len(KEY_COLUMNS) == len(row_key(rows[0]))
    again = MixPipeline(pipeline.prefer)
    result = run(path, out, again.steps())
    assert (result.ran, result.skipped) == (0, 2) and not again.calls
    assert all(r[SUBSET_FOR] == "" for r in read_results(table))
