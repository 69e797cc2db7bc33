"""Detection and segmentation targets in a grid: `targets: {voc: {path: ..., task: detect}}`.

Their cells select and pre-train as any other; then the target's task (detect, segment)
trains on its VOC folders instead of a classification fine-tune, and the row holds its
scores (ap50/ap/ap75, miou/macc/allacc, percent). The pipeline is faked here; the real
one runs in tests/downstream/test_downstream_grid.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from expfiles import refused
from fake_steps import FakePipeline
from mixfiles import MixPipeline
from vocgen import make_voc

from condpretrain.errors import CondPretrainError
from condpretrain.experiment import Experiment, load_experiment, read_results, run, write_results
from condpretrain.experiment.results import DOWNSTREAM_METRICS, HEADLINE_METRICS
from condpretrain.experiment.schema import SECTIONS, section_values
from condpretrain.experiment.slurm_schema import slurm_config
from condpretrain.experiment.steps import FINETUNE, pending, resources
from condpretrain.experiment.target_schema import DOWNSTREAM_SECTIONS
from condpretrain.registry import DOWNSTREAM_TASKS
from condpretrain.report import report
from condpretrain.report.findings import compute_findings
from condpretrain.report.plots import accuracy_vs_cost
from condpretrain.report.tables import all_tables


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"pool": "pool", **data}, sort_keys=False))
    return path


def test_every_downstream_task_is_a_section_with_its_columns():
    assert list(DOWNSTREAM_SECTIONS) == DOWNSTREAM_TASKS.names()
    for name in DOWNSTREAM_SECTIONS:
        task = DOWNSTREAM_TASKS[name]
        assert SECTIONS[name].cls is task.config_class and SECTIONS[name].per_mode
        assert [m.lower() for m in task.metrics] == \
            [c for c in DOWNSTREAM_METRICS if c in {m.lower() for m in task.metrics}]
        assert task.metrics[0].lower() in HEADLINE_METRICS
    assert sorted(DOWNSTREAM_METRICS) == sorted(
        m.lower() for name in DOWNSTREAM_SECTIONS for m in DOWNSTREAM_TASKS[name].metrics)


def test_tasks_folders_and_options_are_parsed(tmp_path: Path):
    config = load_experiment(write(tmp_path, {
        "targets": {"cars": "data/cars",
                    "voc07": {"path": "voc/VOC2007", "task": "detect",
                              "voc": ["voc/VOC2007", "voc/VOC2012"],
                              "detect": {"iterations": 10, "moco": {"lr": 0.01}}},
                    "seg": {"path": "voc/VOC2012", "task": "segment"}},
        "modes": ["supervised", "moco"],
        "detect": {"iterations": 100, "lr": 0.02}, "segment": {"epochs": 3}}))
    voc = (tmp_path / "voc").resolve()
    assert {t: config.target_task(t) for t in config.targets} == {
        "cars": "finetune", "voc07": "detect", "seg": "segment"}
    assert config.target_path("voc07") == str(voc / "VOC2007")
    assert config.target_vocs("voc07") == [str(voc / "VOC2007"), str(voc / "VOC2012")]
    assert config.target_vocs("seg") == [str(voc / "VOC2012")]  # its path by default
    assert section_values(config, "detect", "moco", "voc07") == {"iterations": 10, "lr": 0.01}
    assert section_values(config, "detect", "supervised", "voc07") == {"iterations": 10,
                                                                       "lr": 0.02}
    assert section_values(config, "segment", "moco", "seg") == {"epochs": 3}


def test_a_classification_target_reads_as_before(tmp_path: Path):
    """A folder saved before tasks existed compares equal: the plain form is kept."""
    config = load_experiment(write(tmp_path, {"targets": {"cars": {"path": "cars",
                                                                   "task": "finetune"}}}))
    assert config.targets == {"cars": str((tmp_path / "cars").resolve())}


@pytest.mark.parametrize("data, key", [
    ({"targets": {"v": {"path": "v", "task": "classify"}}}, "targets.v.task"),
    ({"targets": {"v": {"path": "v", "voc": ["v"]}}}, "targets.v.voc"),
    ({"targets": {"v": {"path": "v", "task": "segment", "voc": ["a", "b"]}}}, "targets.v.voc"),
    ({"targets": {"v": {"path": "v", "task": "detect", "voc": ["a", "a"]}}}, "targets.v.voc"),
    ({"targets": {"v": {"path": "v", "task": "detect", "voc": []}}}, "targets.v.voc"),
    ({"targets": {"v": {"path": "v", "task": "detect", "finetune": {"epochs": 2}}}},
     "targets.v.finetune"),
    ({"targets": {"v": {"path": "v", "detect": {"iterations": 2}}}}, "targets.v.detect"),
    ({"targets": {"v": {"path": "v", "task": "detect", "detect": {"seed": 2}}}},
     "targets.v.detect.seed"),  # the grid's
    ({"targets": {"v": {"path": "v", "task": "detect", "detect": {"iterations": 0}}}},
     "targets.v.detect.iterations"),
    ({"targets": {"v": "v"}, "segment": {"epochs": 2}}, "segment"),  # no segment target
    ({"targets": {"v": {"path": "v", "task": "detect"}}, "detect": {"init": "x.pt"}},
     "detect.init"),  # the grid's: the pre-trained backbone
])
def test_a_bad_downstream_target_names_its_key(tmp_path: Path, data: dict, key: str):
    refused(write(tmp_path, data), key)


@pytest.mark.parametrize("damaged, damage, says", [
    ("VOC2012", lambda voc: (voc / "ImageSets/Main/trainval.txt").unlink(), "trainval"),
    ("VOC2007", lambda voc: (voc / "ImageSets/Main/test.txt").write_text(""), "test.txt"),
    ("VOC2012", lambda voc: (voc / "Annotations/000000.xml").write_text("<annotation>"),
     "000000.xml"),
    ("VOC2012", lambda voc: (voc / "SegmentationClass/000001.png").unlink(), "000001"),
])
def test_a_broken_voc_folder_is_refused_before_any_work(grid: Path, tmp_path: Path,
                                                        damaged: str, damage, says: str):
    """Every split a downstream task reads is loaded when run starts: a missing list, an
    empty split, a broken annotation or a missing mask names the target and the file."""
    damage(tmp_path / damaged)  # voc07 trains on both, tests on 2007; seg reads 2012
    fake = Recording()
    with pytest.raises(CondPretrainError) as info:
        run(grid, tmp_path / "out", fake.steps())
    message = str(info.value)
    assert message.startswith(("targets.voc07: ", "targets.seg: ")) and says in message, message
    assert "\n" not in message and not fake.calls  # nothing ran


@pytest.fixture
def grid(tmp_path: Path, two_part_pool: Path, stripes_target: Path) -> Path:
    for year in ("VOC2007", "VOC2012"):  # read by run's checks; the fakes only name them
        make_voc(tmp_path / year, train=2, test=1, size=24)
    return write(tmp_path, {
        "preset": "quick", "pool": [f"parts={two_part_pool}"],
        "targets": {"cars": str(stripes_target),
                    "voc07": {"path": "VOC2007", "task": "detect",
                              "voc": ["VOC2007", "VOC2012"], "detect": {"iterations": 7}},
                    "seg": {"path": "VOC2012", "task": "segment"}},
        "methods": ["random"], "budgets": [0.5], "resolutions": [16],
        "segment": {"epochs": 3}})


class Recording(FakePipeline):
    def __init__(self) -> None:
        super().__init__()
        self.configs: dict[str, list] = {}

    def downstream(self, task, voc, out, config, resume=False):
        self.configs.setdefault(task, []).append((list(voc), Path(out), config))
        return super().downstream(task, voc, out, config, resume)


def test_each_target_trains_with_its_task(grid: Path, tmp_path: Path):
    fake, out = Recording(), tmp_path / "out"
    result = run(grid, out, fake.steps())
    assert result.ran == 9  # per target: random init, entire pool, random 50 %
    assert (fake.calls["finetune"], fake.calls["detect"], fake.calls["segment"]) == (3, 3, 3)
    # one entire-pool run serves all three targets; a subset per target
    assert fake.calls["pretrain"] == 4
    arch = Experiment(load_experiment(grid), out).pretrained_arch("supervised")
    for voc, folder, config in fake.configs["detect"]:
        assert voc == [str(tmp_path / "VOC2007"), str(tmp_path / "VOC2012")]
        assert folder.relative_to(out).parts[:2] == ("detect", "voc07")
        assert (config.iterations, config.arch, config.seed) == (7, arch, 0)
    inits = [config.init for _, _, config in fake.configs["segment"]]
    assert inits[0] is None and all(i.endswith("backbone.pt") for i in inits[1:])
    assert [c.epochs for _, _, c in fake.configs["segment"]] == [3, 3, 3]

    rows = {(r["target"], r["method"]): r for r in read_results(out / "results.csv")}
    assert {r["task"] for (t, _), r in rows.items() if t == "cars"} == {"finetune"}
    detect, segment = rows[("voc07", "entire-pool")], rows[("seg", "random-init")]
    assert detect["task"] == "detect" and detect["top1"] == "" and detect["miou"] == ""
    assert [float(detect[c]) for c in ("ap50", "ap", "ap75")] == \
        pytest.approx([50.0, 25.0, 20.0])
    # segmentation's fractions become percent, as every score in the table
    assert [float(segment[c]) for c in ("miou", "macc", "allacc")] == \
        pytest.approx([30.0, 40.0, 50.0])
    assert segment["finetune_dir"].startswith("segment/seg/") and \
        float(segment["finetune_device_hours"]) == pytest.approx(9 / 3600)

    assert run(grid, out, fake.steps()).ran == 0  # resumed: nothing to do
    assert fake.calls["detect"] == 3


def test_a_killed_downstream_run_is_continued(grid: Path, tmp_path: Path):
    fake, out = Recording(), tmp_path / "out"
    run(grid, out, fake.steps())
    rows = read_results(out / "results.csv")
    killed = next(r for r in rows if r["target"] == "voc07" and r["method"] == "random")
    (out / killed["finetune_dir"] / "result.json").unlink()  # run.json stays: started
    kept = [r for r in rows if r is not killed]
    write_results(out / "results.csv", kept)
    again = Recording()
    assert run(grid, out, again.steps()).ran == 1
    assert again.calls["detect"] == 1 and again.resumed == [str(out / killed["finetune_dir"])]


def test_cluster_steps_run_the_task(grid: Path, tmp_path: Path):
    fake, out = Recording(), tmp_path / "out"
    experiment = Experiment(load_experiment(grid), out, fake.steps())
    experiment.prepare()
    steps = pending(experiment.config, experiment.layout)
    trains = [s for s in steps.values() if s.kind == FINETUNE]
    assert sorted({s.folder.split("/")[0] for s in trains}) == ["detect", "finetune", "segment"]
    for step in steps.values():  # in order: every need comes first
        if step.kind != "collect":
            experiment.run_step(step)
    assert (fake.calls["finetune"], fake.calls["detect"], fake.calls["segment"]) == (3, 3, 3)


def test_a_targets_training_asks_for_its_tasks_resources(grid: Path, tmp_path: Path):
    data = yaml.safe_load(grid.read_text())
    data["slurm"] = {"detect": {"gpus": 8, "time": 900}, "finetune": {"gpus": 1}}
    config = load_experiment(write(tmp_path, data))
    slurm = slurm_config(config)
    asked = {s.folder.split("/")[0]: resources(s, slurm).gpus
             for s in pending(config, Experiment(config, tmp_path / "out").layout).values()
             if s.kind == FINETUNE}
    assert asked == {"finetune": 1, "detect": 8, "segment": 1}  # segment: the default


def test_findings_tables_and_plot_use_each_targets_metric(grid: Path, tmp_path: Path):
    out = tmp_path / "out"
    run(grid, out, Recording().steps())
    rows = read_results(out / "results.csv")
    findings = compute_findings(rows)
    assert findings.metrics == ["top1", "ap50", "miou"]
    versus_init = {c.subject.target: c.paired.mean for c in findings.a.comparisons
                   if c.subject.method == "random"}
    # the fake: a subset's backbone scores 0.4 against random init's 0.3 on both tasks
    assert versus_init["voc07"] == pytest.approx(10.0)  # AP50 points
    assert versus_init["seg"] == pytest.approx(10.0)  # mIoU points
    titles = [t.title for t in all_tables(rows)]
    assert any(t.startswith("Detection AP50 (%)") for t in titles)
    assert any(t.startswith("Segmentation mIoU (%)") for t in titles)
    ap50 = next(t for t in all_tables(rows) if t.title.startswith("Detection AP50"))
    assert "voc07" in ap50.header and "cars" not in ap50.header
    assert accuracy_vs_cost(rows)[:4] == b"\x89PNG"
    text = report(out).markdown.read_text()
    assert "AP50 (detection targets)" in text and "Detection AP75 (%)" in text


def test_a_mix_trains_each_part_with_its_own_task(tmp_path: Path, two_part_pool: Path,
                                                  stripes_target: Path):
    """One subset selected for a classification and a detection target together: it is
    fine-tuned on the one and detected on the other."""
    voc = make_voc(tmp_path / "VOC2007", train=2, test=1, size=24)
    grid = write(tmp_path, {
        "preset": "quick", "pool": [f"parts={two_part_pool}"],
        "targets": {"cars": str(stripes_target), "voc07": {"path": str(voc), "task": "detect"},
                    "both": {"mix": {"cars": 0.5, "voc07": 0.5}}},
        "methods": ["random"], "budgets": [0.5], "resolutions": [16], "baselines": False})
    fake, out = MixPipeline({str(stripes_target): "stripes", str(voc): "noise"}), tmp_path / "out"
    run(grid, out, fake.steps())
    assert fake.calls["merge"] == 1 and fake.calls["detect"] == 2  # its own cell, the mix's
    shared = {r["target"]: r for r in read_results(out / "results.csv") if r["subset_for"]}
    assert shared["cars"]["task"] == "finetune" and shared["voc07"]["task"] == "detect"
    assert shared["cars"]["pretrain_dir"] == shared["voc07"]["pretrain_dir"]
    assert float(shared["voc07"]["ap50"]) > 0 and shared["voc07"]["finetune_dir"].startswith(
        "detect/voc07/supervised-16/subset-for-both/")


def test_run_check_reports_the_work_left_and_runs_nothing(grid: Path, tmp_path: Path, capsys):
    from condpretrain.cli import main

    out = tmp_path / "out"
    assert main(["run", str(grid), "--out", str(out), "--check"]) == 0
    said = capsys.readouterr().out
    # per target: random init, entire pool, random 50 %; the entire-pool run serves all
    assert "9 cell(s), 0 already done" in said
    assert "3 select, 4 pretrain, 3 finetune, 3 detect, 3 segment" in said
    assert not out.exists()  # nothing written
    run(grid, out, Recording().steps())
    assert main(["run", str(grid), "--out", str(out), "--check"]) == 0
    assert "9 cell(s), 9 already done" in capsys.readouterr().out
    (tmp_path / "VOC2007" / "ImageSets" / "Main" / "test.txt").unlink()
    assert main(["run", str(grid), "--out", str(out), "--check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "targets.voc07" in err[0] and "test.txt" in err[0]
