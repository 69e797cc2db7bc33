"""The report's cost columns charge each method what it needed; its total counts shared
work (a cached model, the entire-pool pre-training) once."""

from __future__ import annotations

import json
from pathlib import Path

from condpretrain.experiment import write_results
from condpretrain.report import report
from condpretrain.report.tables import table2, total_cost_table

MODEL = {"target-model-resnet18-abc": 2.0}


def row(method: str, budget: float, select_hours: float, shared: dict[str, float],
        pretrain_dir: str, pretrain_hours: float) -> dict[str, str]:
    return {"target": "cars", "mode": "supervised", "resolution": "224", "budget": str(budget),
            "method": method, "seed": "0", "top1": "50", "select_device_hours": str(select_hours),
            "select_shared": json.dumps(shared), "pretrain_dir": pretrain_dir,
            "pretrain_device_hours": str(pretrain_hours), "finetune_dir": f"ft/{method}",
            "finetune_device_hours": "1"}


ROWS = [
    row("entire-pool", 1, 0.0, {}, "pre/entire", 40.0),
    row("clustering-min", 0.06, 3.0, {"scores/cmin": 1.0, **MODEL}, "pre/cmin", 5.0),
    row("active-learning", 0.06, 2.5, {"scores/al": 0.5, **MODEL}, "pre/al", 5.0),
]


def test_cost_column_charges_each_method_its_shared_model():
    (table,) = table2(ROWS)
    selection = {line[1]: line[-1] for line in table.rows}
    assert selection == {"Entire Dataset": "0", "Clustering (Min)": "3.0",
                         "Active Learning": "2.5"}


def test_total_counts_the_shared_model_once():
    table = total_cost_table(ROWS)
    totals = {line[0]: line[1:] for line in table.rows}
    assert totals["Selection"] == ["3.5", "5.5"]  # counted once | sum of the rows' charges
    assert totals["Total"] == ["56", "58"]


def test_report_shows_the_total(tmp_path: Path):
    write_results(tmp_path / "results.csv", ROWS)
    md = report(tmp_path).markdown.read_text()
    assert "Total cost of the experiment (device-hours)" in md
    assert "| Selection | 3.5 | 5.5 |" in md
