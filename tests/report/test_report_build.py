from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
import yaml
from fake_steps import FakePipeline

from condpretrain.errors import CondPretrainError
from condpretrain.experiment import run, write_results
from condpretrain.report import report
from condpretrain.report.tables import table2

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def result_row(target, method, budget, seed, top1, res=224, mode="supervised", **extra):
    return {"target": target, "mode": mode, "resolution": str(0 if method == "random-init" else res),
            "budget": str(budget), "method": method, "seed": str(seed), "top1": str(top1),
            "pretrain_device_hours": "0" if method == "random-init" else str(10 * budget + 1),
            "select_device_hours": "" if method in ("random-init", "entire-pool") else "0.5",
            "select_seconds": "1800", "pretrain_seconds": "3600", "finetune_seconds": "60",
            **extra}


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    rows = []
    for seed, shift in ((0, 0.0), (1, 2.0)):
        for target, base in (("cars", 50.0), ("birds", 40.0)):
            rows.append(result_row(target, "random-init", 0, seed, base + shift))
            rows.append(result_row(target, "entire-pool", 1, seed, base + 30 + shift,
                                   det_ap50="70.5"))
            for budget in (0.06, 0.12):
                for k, method in enumerate(("random", "domain-classifier", "clustering-min")):
                    # birds: clustering-min is best; cars: domain classifier
                    bonus = {"cars": (0, 4, 2), "birds": (0, 1, 3)}[target][k]
                    rows.append(result_row(target, method, budget, seed,
                                           base + 20 + 10 * budget + bonus + shift))
    write_results(tmp_path / "results.csv", rows)
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump({"name": "hand made"}))
    return tmp_path


def test_report_from_a_results_file(results_dir: Path):
    written = report(results_dir)
    md = written.markdown.read_text()
    assert "# Conditional pre-training: hand made" in md
    assert "| Budget | Method | cars | birds | Pre-train cost (device-h) | Selection (device-h) |" in md
    assert "| 0% | Random Init. | 51.00 ± 1.41 | 41.00 ± 1.41 | 0 | 0 |" in md
    assert "| 100% | Entire Dataset | 81.00 ± 1.41 | 71.00 ± 1.41 | 11 | 0 |" in md
    # best selection method of each budget marked per target column
    assert "| 6% | Random | 71.60 ± 1.41 | 61.60 ± 1.41 | 1.6 | 0.5 |" in md
    assert "|  | Domain Cls. | **75.60 ± 1.41** | 62.60 ± 1.41 | 1.6 | 0.5 |" in md
    assert "|  | Clustering (Min) | 73.60 ± 1.41 | **64.60 ± 1.41** | 1.6 | 0.5 |" in md
    assert "| 12% | Random |" in md
    # the detection column present in the results gets its own table
    assert "Detection AP50" in md
    # selection time apart from pre-training time
    assert "Selection (s)" in md and "Pre-training (s)" in md
    png = results_dir / "figures" / "accuracy_vs_cost.png"
    assert png.read_bytes().startswith(PNG_MAGIC) and png in written.figures
    html = written.html.read_text()
    assert "<strong>75.60 ± 1.41</strong>" in html
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert images and base64.b64decode(images[0]).startswith(PNG_MAGIC)
    assert 'src="figures' not in html  # self-contained
    assert "Random Init." in written.table_text


def test_only_random_init_rows_still_render(tmp_path: Path):
    write_results(tmp_path / "results.csv", [result_row("cars", "random-init", 0, 0, 50)])
    md = report(tmp_path).markdown.read_text()
    assert "| 0% | Random Init. | 50.00 | 0 | 0 |" in md


def test_missing_or_empty_results_is_one_line_error(tmp_path: Path):
    with pytest.raises(CondPretrainError, match="no results.csv"):
        report(tmp_path)
    write_results(tmp_path / "results.csv", [])
    with pytest.raises(CondPretrainError, match="no rows"):
        report(tmp_path)


def test_report_shows_what_each_method_picked(tmp_path: Path, two_part_pool: Path,
                                              stripes_target: Path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({
        "pool": [str(two_part_pool)], "targets": {"warm": str(stripes_target)},
        "methods": ["random", "domain-classifier"], "budgets": [0.25],
        "resolutions": [16], "seeds": [0], "preset": "quick"}))
    out = tmp_path / "out"
    run(path, out, FakePipeline().steps())
    written = report(out)
    names = {p.name for p in written.figures}
    assert {"top_warm_random.png", "picked_warm_domain-classifier.png",
            "jaccard_warm_b25.png"} <= names
    md = written.markdown.read_text()
    assert "Jaccard overlap: warm, 25% budget" in md
    assert "|  | Random | 1.00 |" in md


def test_table2_orders_rows_like_the_paper():
    rows = [result_row("t", m, b, 0, 60.0) for m, b in
            (("clustering-avg", 0.12), ("random", 0.12), ("entire-pool", 1), ("random-init", 0),
             ("active-learning", 0.06), ("random", 0.06))]
    rows += [result_row("t", "random", 0.06, 0, 55.0, res=112)]
    tables = table2(rows)
    assert [t.title.split(" at ")[-1] for t in tables] == ["224x224", "112x112"]
    assert [r[:2] for r in tables[0].rows] == [
        ["0%", "Random Init."], ["100%", "Entire Dataset"], ["6%", "Random"],
        ["", "Active Learning"], ["12%", "Random"], ["", "Clustering (Avg)"]]
    assert [r[:2] for r in tables[1].rows] == [["0%", "Random Init."], ["6%", "Random"]]


def test_cli_report_prints_the_table(results_dir: Path, capsys):
    from condpretrain.cli import main

    assert main(["report", str(results_dir)]) == 0
    out = capsys.readouterr().out
    assert "| 0% | Random Init. |" in out and "report.html" in out
