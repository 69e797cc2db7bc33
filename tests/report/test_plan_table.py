"""The report's predicted-against-measured section, from an experiment folder's plan.json."""

from __future__ import annotations

from pathlib import Path

import pytest

from condpretrain.plan.record import PLAN_FILE, write_plan
from condpretrain.report.html import Heading, Paragraph
from condpretrain.report.plan_table import (
    comparisons,
    median_abs_error,
    plan_blocks,
    stage_label,
    total_comparisons,
)
from condpretrain.report.tables import Table


def key(method: str, budget: str) -> dict[str, str]:
    return {"target": "cars", "mode": "supervised", "resolution": "224", "budget": budget,
            "method": method, "seed": "0"}


def cell(method: str, budget: str, select: float, pretrain: float, finetune: float,
         jobs: dict[str, list[str]]) -> dict:
    return {**key(method, budget), "label": f"{method} {budget}",
            "select_device_hours": select, "pretrain_device_hours": pretrain,
            "finetune_device_hours": finetune, "jobs": jobs}


# Two budgets of one method share its scoring (2 h) and re-select (0 h) each.
PLAN = {"device": "NVIDIA H100", "created": "2024-01-01T00:00:00", "processes": 1,
        "cells": [cell("entire-pool", "1", 0.0, 40.0, 1.0,
                       {"select": [], "pretrain": ["pre/entire"], "finetune": ["ft/entire"]}),
                  cell("random", "0.06", 2.0, 4.0, 1.0,
                       {"select": ["scores"], "pretrain": ["pre/6"], "finetune": ["ft/6"]}),
                  cell("random", "0.12", 2.0, 8.0, 1.0,
                       {"select": ["scores"], "pretrain": ["pre/12"], "finetune": ["ft/12"]})],
        "jobs": [{"key": k, "seconds": h * 3600} for k, h in
                 [("pre/entire", 40), ("ft/entire", 1), ("scores", 2), ("pre/6", 4),
                  ("ft/6", 1), ("pre/12", 8), ("ft/12", 1)]]}


def row(method: str, budget: str, select: str, pretrain: str, finetune: str,
        shared: str = "{}") -> dict[str, str]:
    return {**key(method, budget), "select_device_hours": select, "select_shared": shared,
            "pretrain_device_hours": pretrain, "finetune_device_hours": finetune,
            "pretrain_dir": f"pre/{budget}", "finetune_dir": f"ft/{budget}", "top1": "50"}


ROWS = [row("entire-pool", "1", "", "50", "1"),
        row("random", "0.06", "1", "4", "0.5", '{"scores": 1.0}'),
        row("random", "0.12", "1", "6", "1", '{"scores": 1.0}'),
        row("random", "0.24", "1", "12", "1", '{"scores": 1.0}')]  # not in the plan


def test_each_planned_row_is_compared_stage_by_stage():
    found, unplanned = comparisons(PLAN, ROWS)
    assert [r["budget"] for r in unplanned] == ["0.24"]
    by = {(c.label, c.stage): c for c in found}
    # a baseline's selection is neither predicted nor measured: left out
    assert ("entire-pool 1", "select") not in by
    entire = by["entire-pool 1", "pretrain"]
    assert (entire.predicted, entire.measured, entire.ratio) == (40.0, 50.0, 1.25)
    assert entire.error == pytest.approx(-0.2)
    assert by["random 0.12", "pretrain"].error == pytest.approx(8 / 6 - 1)
    # |errors|: 0.2 0 | 1 0 1 | 1 1/3 0
    assert median_abs_error(found) == pytest.approx((0.2 + 1 / 3) / 2)


def test_totals_count_the_shared_scoring_once():
    totals = {c.stage: c for c in total_comparisons(PLAN, ROWS)}
    assert totals["select"].predicted == pytest.approx(2.0)  # one scoring, not two
    assert totals["select"].measured == pytest.approx(1.0)
    assert totals["pretrain"].predicted == pytest.approx(52.0)
    assert totals["pretrain"].measured == pytest.approx(60.0)


def test_the_report_section(tmp_path: Path):
    assert plan_blocks(tmp_path, ROWS) == []  # no plan: no section
    write_plan(tmp_path / PLAN_FILE, PLAN)
    heading, intro, cells, totals = plan_blocks(tmp_path, ROWS)
    assert isinstance(heading, Heading) and heading.text == "Predicted against measured cost"
    assert isinstance(intro, Paragraph) and "3 of 4 rows planned" in intro.text
    assert "NVIDIA H100" in intro.text and "27 %" in intro.text
    assert isinstance(cells, Table) and isinstance(totals, Table)
    assert ["entire-pool 1", "Pre-training", "40", "50", "1.25", "-20 %"] in cells.rows
    assert len(totals.rows) == 3


def test_a_plan_for_other_rows_or_a_broken_file_does_not_stop_the_report(tmp_path: Path):
    write_plan(tmp_path / PLAN_FILE, {**PLAN, "cells": [{**c, "target": "birds"}
                                                         for c in PLAN["cells"]]})
    heading, note = plan_blocks(tmp_path, ROWS)
    assert "names none of the 4 rows" in note.text
    (tmp_path / PLAN_FILE).write_text("[1, 2]")
    heading, note = plan_blocks(tmp_path, ROWS)
    assert isinstance(note, Paragraph) and "not a plan written by" in note.text


def test_a_downstream_rows_training_is_named_by_its_task():
    detected = [{**r, "task": "detect"} for r in ROWS]
    found, _ = comparisons(PLAN, detected)
    labels = {(c.stage, stage_label(c)) for c in found}
    assert ("finetune", "VOC detection") in labels
    assert ("pretrain", "Pre-training") in labels
    plain, _ = comparisons(PLAN, ROWS)  # rows written before tasks: fine-tuning
    assert {stage_label(c) for c in plain if c.stage == "finetune"} == {"Fine-tuning"}
