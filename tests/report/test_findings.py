"""The Findings are computed from the results table: synthetic tables whose answers are
known (a clear gain, noise, a reversed effect, one seed, missing baselines, cost ratios,
pool shares) must come out as they are, whichever way that is."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest

from condpretrain.experiment import write_results
from condpretrain.report import report
from condpretrain.report.composition import BY_CLASS, BY_SOURCE, FROM_POOL_CSV, FROM_RANDOM
from condpretrain.report.findings import compute_findings
from condpretrain.report.findings_text import detail_tables, sentences
from condpretrain.report.paired import (
    BETTER,
    NO_DIFFERENCE,
    ONE_SEED,
    WORSE,
    paired_difference,
)

T_975_DF2 = 4.302652729749464  # Student t, 97.5th percentile, 2 degrees of freedom


def row(method: str, top1: float, seed: int = 0, budget: float = 0.1, res: int = 224,
        target: str = "cars", pretrain: float = 1.0, select: float | None = 0.5,
        **extra: str) -> dict[str, str]:
    init = method == "random-init"
    return {"target": target, "mode": "supervised", "resolution": "0" if init else str(res),
            "budget": "0" if init else str(budget), "method": method, "seed": str(seed),
            "top1": str(top1), "pretrain_device_hours": "0" if init else str(pretrain),
            "select_device_hours": "" if select is None or method in ("random-init",
                                                                       "entire-pool")
            else str(select), **extra}


def cells(method: str, values: list[float], **kw) -> list[dict[str, str]]:
    """One row per seed 0, 1, 2, ... with the given accuracies."""
    return [row(method, v, seed=s, **kw) for s, v in enumerate(values)]


RANDOM = [60.0, 62.0, 61.0]


def shifted(sign: int, deltas: tuple[float, ...]) -> list[float]:
    """RANDOM's accuracies, each seed moved by its delta (up, or down with sign -1)."""
    return [r + sign * d for r, d in zip(RANDOM, deltas, strict=True)]


def only(finding):
    assert not finding.missing, finding.missing
    assert len(finding.comparisons) == 1
    return finding.comparisons[0]


def test_interval_is_students_t_of_the_paired_differences():
    p = paired_difference({"0": 11.0, "1": 22.0, "2": 33.0}, {"0": 10.0, "1": 20.0, "2": 30.0})
    half = T_975_DF2 * 1.0 / math.sqrt(3)  # differences 1, 2, 3: mean 2, sd 1
    assert (p.n, p.mean) == (3, 2.0)
    assert p.low == pytest.approx(2 - half) and p.high == pytest.approx(2 + half)
    assert p.verdict == NO_DIFFERENCE  # [-0.48, 4.48] holds 0


def test_pairs_only_the_seeds_both_sides_have():
    p = paired_difference({"1": 5.0, "2": 6.0, "3": 7.0, "10": 9.0},
                          {"0": 0.0, "2": 1.0, "10": 2.0, "1": 1.0})
    assert p.seeds == ("1", "2", "10")  # numeric order, seed 0 and 3 unpaired
    assert p.differences == (4.0, 5.0, 7.0)
    assert paired_difference({"0": 1.0}, {"1": 1.0}) is None


def test_clear_gain_over_random_is_better():
    rows = cells("random", RANDOM) + cells("domain-classifier",
                                           shifted(1, (4.0, 4.2, 3.8)))
    findings = compute_findings(rows)
    c = only(findings.b)
    assert c.paired.mean == pytest.approx(4.0) and c.paired.verdict == BETTER
    assert 3.0 < c.paired.low < 4.0 < c.paired.high < 5.0
    sentence = sentences(findings)[1]
    assert sentence.startswith("(b) ")
    assert "1 of 1 comparisons beat the random subset" in sentence
    assert "+4.00 points" in sentence


def test_noisy_difference_is_no_significant_difference():
    rows = cells("random", RANDOM) + cells("domain-classifier",
                                           shifted(1, (3.0, -2.0, 1.0)))
    findings = compute_findings(rows)
    c = only(findings.b)
    assert c.paired.low < 0 < c.paired.high and c.paired.verdict == NO_DIFFERENCE
    assert "0 of 1 comparisons beat the random subset, 1 no significant difference" \
        in sentences(findings)[1]


def test_reversed_effect_is_reported_as_worse():
    rows = cells("random", RANDOM) + cells("clustering-min",
                                           shifted(-1, (2.0, 2.5, 1.5)))
    findings = compute_findings(rows)
    c = only(findings.b)
    assert c.paired.mean == pytest.approx(-2.0) and c.paired.verdict == WORSE
    assert c.paired.high < 0
    assert "0 of 1 comparisons beat the random subset, 1 worse" in sentences(findings)[1]
    table = next(t for t in detail_tables(findings) if t.title.startswith("(b)"))
    assert table.rows[0][4] == WORSE and table.rows[0][6] == "-2.00"


def test_one_seed_gives_no_interval():
    rows = [row("random", 60.0), row("domain-classifier", 63.0)]
    findings = compute_findings(rows)
    c = only(findings.b)
    assert (c.paired.n, c.paired.low, c.paired.high) == (1, None, None)
    assert c.paired.verdict == ONE_SEED
    assert "+3.00 points (one seed: no interval)" in sentences(findings)[1]
    table = next(t for t in detail_tables(findings) if t.title.startswith("(b)"))
    assert table.rows[0][7] == "no interval (one seed)"


def test_missing_rows_skip_their_finding_and_say_what_is_missing():
    findings = compute_findings(cells("random", RANDOM))  # one method, budget, resolution
    assert findings.a.missing == "no random-init rows"
    assert findings.b.missing == "no conditional method rows"
    assert findings.c.missing == "one budget only"
    assert findings.d.missing == "no entire-pool rows"
    assert findings.e.missing == "one resolution only"
    text = sentences(findings)
    assert text[0] == ("(a) Pre-training on a subset vs random init: not computed: "
                       "no random-init rows.")
    assert text[3].endswith("not computed: no entire-pool rows.")
    assert text[5].startswith("(f) ") and "not computed" in text[5]
    assert detail_tables(findings) == []


def test_subset_cells_against_random_init_are_counted():
    rows = cells("random-init", [40.0, 41.0, 40.5])
    rows += cells("random", [50.0, 51.5, 50.2])  # clear gain
    rows += cells("domain-classifier", [55.0, 56.0, 55.1])  # clear gain, the largest
    rows += cells("clustering-min", [45.0, 36.0, 42.0])  # noisy: no significant difference
    findings = compute_findings(rows)
    verdicts = {c.subject.method: c.paired.verdict for c in findings.a.comparisons}
    assert verdicts == {"random": BETTER, "domain-classifier": BETTER,
                        "clustering-min": NO_DIFFERENCE}
    sentence = sentences(findings)[0]
    assert sentence.startswith("(a) Pre-training on a subset vs random init: 2 of 3 subset "
                               "cells beat random init, 1 no significant difference;")
    assert re.search(r"highest: Domain Cls\., 10%, 224px on cars .*: \+14\.87 points", sentence)
    assert re.search(r"lowest: Clustering \(Min\), 10%, 224px on cars .*: \+0\.50 points",
                     sentence)


def test_entire_pool_cost_ratio_counts_selection_and_pretraining():
    rows = [row("entire-pool", 70.0, seed=0, budget=1, pretrain=50.0),
            row("entire-pool", 72.0, seed=1, budget=1, pretrain=60.0),
            row("domain-classifier", 69.0, seed=0, pretrain=2.0, select=0.5),
            row("domain-classifier", 70.0, seed=1, pretrain=3.0, select=0.5),
            row("random", 65.0, seed=0, pretrain=2.0, select=None)]  # records no selection
    findings = compute_findings(rows)
    ratios = {c.subject.method: c.cost_ratio for c in findings.d.comparisons}
    assert ratios["domain-classifier"] == pytest.approx((2.5 + 3.5) / 2 / 55.0)
    assert ratios["random"] == pytest.approx(2.0 / 50.0)  # paired on seed 0 only
    domain = next(c for c in findings.d.comparisons if c.subject.method == "domain-classifier")
    assert domain.paired.differences == (-1.0, -2.0) and domain.paired.verdict == NO_DIFFERENCE
    assert "cost ratio 0.04× to 0.0545×" in sentences(findings)[3]
    table = next(t for t in detail_tables(findings) if t.title.startswith("(d)"))
    assert table.header[-1] == "Cost ratio" and "0.0545×" in {r[-1] for r in table.rows}


def test_low_resolution_accuracy_and_cost_ratio():
    rows = cells("random", [60.0, 61.0, 62.0], res=224, pretrain=4.0)
    rows += cells("random", [57.0, 58.2, 58.8], res=112, pretrain=1.0)
    findings = compute_findings(rows)
    c = only(findings.e)
    assert (c.subject.resolution, c.baseline.resolution) == (112, 224)
    assert c.paired.mean == pytest.approx(-3.0) and c.paired.verdict == WORSE
    assert c.cost_ratio == pytest.approx(0.25)
    assert sentences(findings)[4].startswith(
        "(e) Low (112px) vs full (224px) resolution (same method and budget): 0 of 1 "
        "comparisons are better at the lower resolution, 1 worse")


def test_budgets_compare_the_largest_with_the_smallest():
    rows = []
    for budget, gain in ((0.1, 0.0), (0.25, 1.0), (0.5, 2.0)):
        rows += cells("random", [v + gain for v in RANDOM], budget=budget)
    findings = compute_findings(rows)
    c = only(findings.c)
    assert (c.subject.budget, c.baseline.budget) == (0.5, 0.1)
    assert c.paired.differences == (2.0, 2.0, 2.0) and c.paired.verdict == BETTER
    assert sentences(findings)[2].startswith("(c) 50% vs 10% budget")


# (f): tiny selection folders -------------------------------------------------------------

def selection(out: Path, name: str, picked: list[tuple[str, str]],
              meta: dict | None = None, pool: list[tuple[str, str]] | None = None) -> str:
    """A complete selection folder: subset.csv of (label, pool) rows, selection.json,
    and pool.csv when the pool's listing is given."""
    folder = out / "select" / name
    folder.mkdir(parents=True)
    for filename, listing in (("subset.csv", picked), ("pool.csv", pool)):
        if listing is None:
            continue
        with open(folder / filename, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label", "pool", "score", "rank"])
            writer.writerows([f"{p}/{label}/{i}.jpg", label, p, 1.0, i + 1]
                             for i, (label, p) in enumerate(listing))
    (folder / "selection.json").write_text(json.dumps(meta or {}))
    return f"select/{name}"


def shares(findings, method: str) -> dict[str, tuple[float, float | None, float | None]]:
    (target,) = findings.f
    parts = next(m for m in target.methods if m.method == method).parts
    return {p.part: (p.share, p.pool_share, p.enrichment) for p in parts}


def test_shares_by_pool_source_from_selection_json(tmp_path: Path):
    meta = {"pools": {"web": 80, "photos": 20}, "pool_size": 100}
    rows = [row("domain-classifier", 60.0, select_dir=selection(
                tmp_path, "dc", [("x", "photos")] * 8 + [("x", "web")] * 2, meta)),
            row("random", 58.0, select_dir=selection(
                tmp_path, "rnd", [("x", "web")] * 8 + [("x", "photos")] * 2, meta))]
    findings = compute_findings(rows, tmp_path)
    (target,) = findings.f
    assert target.by == BY_SOURCE and target.budget == 0.1
    photos = shares(findings, "domain-classifier")["photos"]
    assert photos == pytest.approx((0.8, 0.2, 4.0))
    assert shares(findings, "random")["web"] == pytest.approx((0.8, 0.8, 1.0))
    sentence = sentences(findings)[5]
    assert "Domain Cls. mostly photos (80% of its picks vs 20% of the pool, 4.00×)" in sentence
    assert "Random mostly web (80% of its picks vs 80% of the pool, 1.00×)" in sentence


def test_shares_by_class_folder_from_pool_csv(tmp_path: Path):
    pool = [(label, "imgs") for label in "abcd" for _ in range(25)]
    picked = [("a", "imgs")] * 6 + [("b", "imgs")] * 2 + [("c", "imgs")] * 2
    rows = [row("clustering-min", 60.0, select_dir=selection(
        tmp_path, "cm", picked, {"pools": {"imgs": 100}}, pool))]
    findings = compute_findings(rows, tmp_path)
    (target,) = findings.f
    assert (target.by, target.pool_source) == (BY_CLASS, FROM_POOL_CSV)
    assert shares(findings, "clustering-min") == {  # approx per value: pytest 9.2 refuses
        "a": pytest.approx((0.6, 0.25, 2.4)),      # approx over a dict of tuples
        "b": pytest.approx((0.2, 0.25, 0.8)), "c": pytest.approx((0.2, 0.25, 0.8))}
    table = next(t for t in detail_tables(findings) if t.title.startswith("(f)"))
    assert table.rows[0] == ["cars", "Clustering (Min)", "a", "6", "60.0%", "25.0%", "2.4×"]


def test_pool_shares_fall_back_to_the_random_subset_and_say_so(tmp_path: Path):
    rows = [row("domain-classifier", 60.0, select_dir=selection(
                tmp_path, "dc", [("a", "imgs")] * 3 + [("b", "imgs")])),
            row("random", 58.0, select_dir=selection(
                tmp_path, "rnd", [("a", "imgs"), ("b", "imgs")] * 2))]
    findings = compute_findings(rows, tmp_path)
    (target,) = findings.f
    assert target.pool_source == FROM_RANDOM
    assert shares(findings, "domain-classifier")["a"] == pytest.approx((0.75, 0.5, 1.5))
    assert "pool shares estimated from the random subset" in sentences(findings)[5]


def test_largest_budget_and_lowest_seed_are_the_subsets_read(tmp_path: Path):
    rows = [row("random", 60.0, seed=1, budget=0.2,
                select_dir=selection(tmp_path, "s1", [("b", "p")])),
            row("random", 60.0, seed=0, budget=0.2,
                select_dir=selection(tmp_path, "s0", [("a", "p")])),
            row("random", 60.0, seed=0, budget=0.1,
                select_dir=selection(tmp_path, "small", [("c", "p")]))]
    findings = compute_findings(rows, tmp_path)
    assert findings.f[0].budget == 0.2 and list(shares(findings, "random")) == ["a"]


# the report ---------------------------------------------------------------------------

def test_report_opens_with_the_findings(tmp_path: Path):
    rows = cells("random-init", [40.0, 41.0, 40.5]) + cells("random", RANDOM)
    rows += cells("domain-classifier", [r + 4 for r in RANDOM])
    write_results(tmp_path / "results.csv", rows)
    written = report(tmp_path)
    md = written.markdown.read_text()
    first_sections = re.findall(r"^## (.+)$", md, flags=re.M)
    assert first_sections[0] == "Findings"
    assert md.index("## Findings") < md.index("Top-1 accuracy (%)")
    assert "- (b) Each conditional method vs a random subset" in md
    html = written.html.read_text()
    assert re.search(r"<h1>[^<]*</h1>\s*<section id=\"findings\">\s*<h2>Findings</h2>", html)
    assert html.index('id="findings"') < html.index("Top-1 accuracy (%)")
    assert written.findings_text.startswith("Findings\n(a) ")
    assert written.table_text.startswith(written.findings_text)
    assert "| 0% | Random Init. |" in written.table_text  # the tables follow
    assert "mean ± std over 3 seeds" in md  # the cost plot's caption


def test_a_difference_that_rounds_to_zero_is_not_negative():
    p = paired_difference({"0": 0.1 + 0.2, "1": 1.0}, {"0": 0.3, "1": 1.0 + 1e-12})
    assert p.mean < 0 and p.text().startswith("+0.00 points")


def test_pool_listing_is_found_through_the_scores_it_was_reselected_from(tmp_path: Path):
    scores = tmp_path / "scores"
    scores.mkdir()
    pool = [("a", "imgs")] * 10 + [("b", "imgs")] * 30
    with open(scores / "pool.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["path", "label", "pool"],
                                      *[[f"{i}.jpg", label, p] for i, (label, p) in
                                        enumerate(pool)]])
    rows = [row("domain-classifier", 60.0, select_dir=selection(
        tmp_path, "dc", [("a", "imgs")] * 3 + [("b", "imgs")],
        {"scores_from": str(scores)}))]
    findings = compute_findings(rows, tmp_path)
    assert findings.f[0].pool_source == FROM_POOL_CSV
    assert shares(findings, "domain-classifier")["a"] == pytest.approx((0.75, 0.25, 3.0))


def test_plot_caption_counts_the_seeds_behind_the_error_bars():
    from condpretrain.report.plots import error_bar_caption

    rows = cells("random", RANDOM) + [row("domain-classifier", 60.0)]
    assert error_bar_caption(rows).startswith("mean ± std over 1-3 seeds")
    assert error_bar_caption(rows[-1:]) == "one seed per cell: no error bars"
