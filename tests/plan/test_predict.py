"""The prediction's arithmetic, with rates given (no timing): what each cell's runs will
do, priced; shared work charged to every cell that needs it and counted once in totals;
which cells fit in the hours, in the runner's order."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from condpretrain.experiment.runner import Experiment
from condpretrain.experiment.schema import parse_experiment
from condpretrain.plan.predict import plan_grid, schedule, totals
from condpretrain.plan.rates import (
    LinearCost,
    MethodRate,
    ModelRate,
    Rates,
    RunRate,
    SelectionRates,
    Sizes,
    TaskRate,
    TaskWork,
    epoch_images,
    evaluated_epochs,
    pretrain_key,
    steps_per_epoch,
)
from condpretrain.train.data import EpochBatches, EpochSampler

HOUR = 3600.0
MODEL = "target-model-resnet18"


def rates(resolutions=(224, 112), modes=("supervised",), step=(1.0, 0.25)) -> Rates:
    """Round numbers: a 224 px step costs ``step[0]`` s, a 112 px one ``step[1]``."""
    per_res = dict(zip(resolutions, step, strict=True))
    selection = SelectionRates(
        index_seconds=10.0, every=LinearCost(5.0, 0.01), reselect=LinearCost(0.0, 0.001),
        methods={"random": MethodRate(0.0, LinearCost(0.0, 0.0)),
                 "clustering-min": MethodRate(20.0, LinearCost(1.0, 0.1), (MODEL,)),
                 "active-learning": MethodRate(2.0, LinearCost(1.0, 0.1), (MODEL,))},
        models={MODEL: ModelRate(epoch_seconds=30.0, fixed_seconds=60.0,
                                 epochs_option="target_epochs", calibration_epochs=4)})
    return Rates(
        selection=selection,
        pretrain={pretrain_key(m, r): RunRate(256, per_res[r], 0.0, 0.0)
                  for m in modes for r in resolutions},
        pretrain_cache={r: LinearCost(0.0, 0.0) for r in resolutions},
        finetune={m: RunRate(64, 0.5, 0.0, 100.0) for m in modes},
        finetune_cache={224: LinearCost(0.0, 0.0)})


def experiment(tmp_path: Path, **grid) -> Experiment:
    data = {"pool": ["/data/pool"], "targets": {"cars": "/data/cars"}, "preset": "paper",
            "methods": ["random"], "budgets": [0.1], "resolutions": [224], **grid}
    return Experiment(parse_experiment(data, base=tmp_path), tmp_path / "out")


SIZES = Sizes(pool=25_600, target_train=6_400, target_test=1_000)


def planned(exp: Experiment, priced: Rates):
    """The grid priced with ``priced`` and :data:`SIZES` for every target."""
    names = list(exp.config.targets)
    return plan_grid(exp, dict.fromkeys(names, SIZES), dict.fromkeys(names, priced))


def job_of(plans, jobs, stage, **key):
    plan = next(p for p in plans if all(getattr(p.cell, k) == v for k, v in key.items()))
    (found,) = [jobs[k] for k in plan.jobs[stage] if k.startswith(stage)]
    return found


def test_a_line_through_two_sizes():
    cost = LinearCost.through([(100, 3.0), (400, 9.0)])
    assert cost.fixed_seconds == pytest.approx(1.0) and cost.per_item_seconds == pytest.approx(0.02)
    assert cost.seconds(1000, calls=3) == pytest.approx(3 * 1.0 + 20.0)
    # noise that tilts the line downwards leaves no negative part: all per image
    tilted = LinearCost.through([(100, 3.0), (400, 2.0)])
    assert tilted.fixed_seconds == 0 and tilted.per_item_seconds == pytest.approx(5.0 / 500)


def test_epoch_arithmetic_is_the_loaders():
    for images, batch, drop_last in [(40, 32, False), (40, 32, True), (33, 32, False),
                                     (1, 32, False), (1000, 64, True)]:
        batches = EpochBatches(EpochSampler(images, seed=0, shuffle=True, pad=True,
                                            min_share=2), batch, drop_last=drop_last).batches()
        assert steps_per_epoch(images, batch, drop_last) == len(batches)
        assert epoch_images(images, batch, drop_last) == sum(len(b) for b in batches)


def test_run_rate_prices_images_not_steps():
    rate = RunRate(batch_size=32, step_seconds=0.32, epoch_seconds=2.0, fixed_seconds=5.0)
    # 3 epochs of 40 images: 120 images at 0.01 s, 2 turns between epochs, once 5 s
    assert rate.seconds(3, 40) == pytest.approx(5.0 + 1.2 + 4.0)
    assert rate.images_per_second == pytest.approx(100.0)


def test_pretraining_scales_linearly_with_the_budget(tmp_path):
    exp = experiment(tmp_path, budgets=[0.1, 0.2, 0.4], baselines=False)
    plans, jobs = planned(exp, rates())
    seconds = [job_of(plans, jobs, "pretrain", budget=b).seconds for b in (0.1, 0.2, 0.4)]
    # 2560 images x 90 epochs / 256 per step x 1 s: the paper's supervised schedule
    assert seconds[0] == pytest.approx(90 * 2560 / 256)
    assert seconds[1] == pytest.approx(2 * seconds[0])
    assert seconds[2] == pytest.approx(4 * seconds[0])


def test_each_resolution_takes_its_own_rate(tmp_path):
    exp = experiment(tmp_path, resolutions=[224, 112], baselines=["entire-pool"])
    plans, jobs = planned(exp, rates(step=(1.0, 0.25)))
    at = {r: job_of(plans, jobs, "pretrain", resolution=r, method="entire-pool").seconds
          for r in (224, 112)}
    assert at[224] == pytest.approx(90 * 25_600 / 256)
    assert at[112] == pytest.approx(at[224] / 4)
    assert job_of(plans, jobs, "pretrain", resolution=224, method="entire-pool").detail[
        "images"] == SIZES.pool


def test_scoring_and_the_cached_model_are_charged_to_each_cell_and_counted_once(tmp_path):
    exp = experiment(tmp_path, methods=["clustering-min", "active-learning"],
                     budgets=[0.1, 0.2], baselines=False)
    plans, jobs = planned(exp, rates())
    model = 60.0 + 30 * 30  # fixed + the paper's 30 target epochs
    chunks = math.ceil(SIZES.pool / 50_000)
    every = 10.0 + 5.0 + 0.01 * SIZES.pool
    scoring = {"clustering-min": every + 20.0 + chunks * 1.0 + 0.1 * SIZES.pool,
               "active-learning": every + 2.0 + chunks * 1.0 + 0.1 * SIZES.pool}
    reselect = 0.001 * SIZES.pool
    for plan in plans:  # each row: its method's scoring, the model, its re-selection
        seconds = sum(jobs[k].seconds for k in plan.jobs["select"])
        assert seconds == pytest.approx(scoring[plan.cell.method] + model + reselect)
    once, charged = totals(plans, jobs), totals(plans, jobs, once=False)
    assert once["select"] * HOUR == pytest.approx(sum(scoring.values()) + model + 4 * reselect)
    assert charged["select"] * HOUR == pytest.approx(
        2 * sum(scoring.values()) + 4 * model + 4 * reselect)
    assert once["total"] == pytest.approx(once["select"] + once["pretrain"] + once["finetune"])


def test_baselines_select_nothing_and_random_init_pretrains_nothing(tmp_path):
    exp = experiment(tmp_path, modes=["supervised", "moco"])
    plans, _ = planned(exp, rates(modes=("supervised", "moco")))
    by_method = {(p.cell.mode, p.cell.method): p.jobs for p in plans}
    for mode in ("supervised", "moco"):
        assert by_method[mode, "random-init"]["select"] == ()
        assert by_method[mode, "random-init"]["pretrain"] == ()
        assert by_method[mode, "entire-pool"]["select"] == ()
        assert len(by_method[mode, "random"]["select"]) == 2  # scoring, re-selection


def test_finetuning_follows_the_recipe_of_the_cells_backbone(tmp_path):
    exp = experiment(tmp_path, modes=["supervised", "moco"], baselines=["random-init"])
    plans, jobs = planned(exp, rates(modes=("supervised", "moco")))
    epochs = {(p.cell.mode, p.cell.method): jobs[p.jobs["finetune"][0]].detail["epochs"]
              for p in plans}
    # MoCo backbones: the paper's 100-epoch recipe; random init and supervised: 90
    assert epochs == {("supervised", "random-init"): 90, ("supervised", "random"): 90,
                      ("moco", "random-init"): 90, ("moco", "random"): 100}


def test_finetuning_is_evaluated_as_often_as_its_options_say(tmp_path):
    assert [evaluated_epochs(e, k) for e, k in [(30, 10), (31, 10), (4, 1), (5, 10)]] == \
        [3, 4, 4, 1]
    sparse = rates()
    sparse.finetune["supervised"] = RunRate(64, 0.5, epoch_seconds=1.0, fixed_seconds=100.0,
                                            evaluation_seconds=20.0)
    exp = experiment(tmp_path, baselines=["random-init"],
                     finetune={"epochs": 30, "eval_every": 10})
    plans, jobs = planned(exp, sparse)
    job = job_of(plans, jobs, "finetune", method="random-init")
    # 30 epochs of 6400 images at 64 a step, 29 turns, 2 passes besides the last one
    assert job.detail["evaluations"] == 3
    assert job.seconds == pytest.approx(100.0 + 30 * 100 * 0.5 + 29 * 1.0 + 2 * 20.0)


def test_the_cells_that_fit_are_a_prefix_in_the_runners_order(tmp_path):
    exp = experiment(tmp_path, methods=["random", "clustering-min"], budgets=[0.1, 0.2])
    plans, jobs = planned(exp, rates())
    labels = [p.cell.label for p in plans]
    assert labels[:2] == ["cars supervised random-init seed 0",
                          "cars supervised 224px 100% entire-pool seed 0"]
    everything = schedule(plans, jobs, None)
    assert all(c.fits is None for c in everything)
    cumulative = [c.cumulative for c in everything]
    assert cumulative == sorted(cumulative)
    assert cumulative[-1] == pytest.approx(totals(plans, jobs)["total"])
    hours = (cumulative[2] + cumulative[3]) / 2
    costs = schedule(plans, jobs, hours)
    assert [c.fits for c in costs] == [True, True, True] + [False] * (len(costs) - 3)
    # a later cell adds only what no earlier one needed: the second budget of a method
    # re-selects from its scores, it does not score again
    second = next(c for c in costs if c.plan.cell.method == "clustering-min"
                  and c.plan.cell.budget == 0.2)
    assert second.added < second.charged["select"] + second.charged["pretrain"] + \
        second.charged["finetune"]


def test_a_downstream_target_is_priced_by_its_tasks_rate_and_shares_the_pool_run(tmp_path):
    exp = experiment(tmp_path, targets={"cars": "/data/cars",
                                        "voc": {"path": "/data/VOC2007", "task": "detect"}},
                     modes=["supervised", "moco"])
    priced = rates(modes=("supervised", "moco"))
    work = TaskWork(iterations=24_000, precise_bn_batches=200, train_images=16_551,
                    test_images=4_952)
    for mode, step in (("supervised", 0.5), ("moco", 0.25)):
        priced.tasks[mode] = TaskRate(step, fixed_seconds=60.0, precise_bn_seconds=0.1,
                                      evaluation_seconds=0.05)
        priced.task_work[mode] = work
    plans, jobs = planned(exp, priced)
    detected = [p for p in plans if p.cell.target == "voc"]
    assert {p.cell.task for p in detected} == {"detect"} and len(detected) == 6
    for plan in detected:  # random init included: the task runs whatever the backbone
        (key,) = plan.jobs["finetune"]
        step = 0.5 if plan.cell.mode == "supervised" else 0.25
        assert key.startswith("detect/voc/")
        assert jobs[key].seconds == pytest.approx(60.0 + 24_000 * step + 200 * 0.1
                                                  + 4_952 * 0.05)
        assert jobs[key].detail["task"] == "detect"
    # the entire-pool pre-training serves both targets: one job, counted once
    entire = {p.jobs["pretrain"] for p in plans if p.cell.method == "entire-pool"}
    assert len(entire) == 2  # one per mode
    cars = next(p for p in plans if p.cell.target == "cars" and p.cell.method != "random-init")
    assert jobs[cars.jobs["finetune"][0]].detail["epochs"] == 90  # fine-tuned as before


def test_a_fusion_is_charged_its_parts_scorings_once_and_its_own_ranking(tmp_path):
    exp = experiment(tmp_path, methods=["knn@classic", "fuse:clustering-min,knn@classic"],
                     baselines=False)
    priced = rates()
    priced.selection.methods["knn@classic"] = MethodRate(1.0, LinearCost(0.5, 0.01),
                                                         ("embeddings-classic",))
    priced.selection.embeddings["embeddings-classic"] = LinearCost(3.0, 0.02)
    plans, jobs = planned(exp, priced)
    knn, fusion = plans
    embeddings = 3.0 + 0.02 * SIZES.pool
    every = 10.0 + 5.0 + 0.01 * SIZES.pool
    knn_scoring = every + 1.0 + 0.5 + 0.01 * SIZES.pool
    reselect = 0.001 * SIZES.pool
    assert sum(jobs[k].seconds for k in knn.jobs["select"]) == pytest.approx(
        knn_scoring + embeddings + reselect)
    # the fusion: both parts' scorings and their models, its own ranking of their saved
    # scores (listing the pool, a re-selection's work per part), its re-selection
    clustering = every + 20.0 + 1.0 + 0.1 * SIZES.pool
    model = 60.0 + 30 * 30
    own = 10.0 + 2 * reselect
    assert sum(jobs[k].seconds for k in fusion.jobs["select"]) == pytest.approx(
        clustering + model + knn_scoring + embeddings + own + reselect)
    # knn's scoring and the embeddings are one job each, shared with knn's own cell
    assert set(knn.jobs["select"][:2]) <= set(fusion.jobs["select"])
    once = totals(plans, jobs)["select"] * HOUR
    assert once == pytest.approx(clustering + model + knn_scoring + embeddings + own
                                 + 2 * reselect)
