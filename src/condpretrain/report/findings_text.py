"""The Findings as words and tables: one sentence per finding, each built from the
computed comparisons (:mod:`condpretrain.report.findings`), then the detail tables.

A sentence states the counts of each verdict and the extreme comparisons, whichever way
they came out; a finding that could not be computed says what was missing.
"""

from __future__ import annotations

from collections import Counter

from condpretrain.experiment.results import (
    ENTIRE_POOL,
    RANDOM_INIT,
    budget_label,
    method_label,
    method_order,
)
from condpretrain.report.composition import FROM_RANDOM, TargetComposition
from condpretrain.report.findings import CellKey, Comparison, Finding, Findings
from condpretrain.report.paired import BETTER, NO_DIFFERENCE, ONE_SEED, WORSE, signed
from condpretrain.report.tables import Table

PARTS_SHOWN = 6  # per method in the (f) table; the rest are counted in one line

# (title, what is counted, what "better" means) of each comparison finding
WORDING = {
    "a": ("Pre-training on a subset vs random init", "subset cells", "beat random init"),
    "b": ("Each conditional method vs a random subset of the same budget and resolution",
          "comparisons", "beat the random subset"),
    "c": ("Larger vs smaller budget (same method and resolution)", "comparisons",
          "gain from the larger budget"),
    "d": ("Subset vs entire pool (same resolution)", "subset cells", "beat the entire pool"),
    "e": ("Low vs full resolution (same method and budget)", "comparisons",
          "are better at the lower resolution"),
}
COST_DEFINITION = {
    "d": "cost ratio = (selection + pre-training device-hours of the subset) / pre-training "
         "device-hours of the entire pool, means over the paired seeds (a subset row that "
         "records no selection cost counts it as 0)",
    "e": "cost ratio = pre-training device-hours at the lower / at the highest resolution, "
         "means over the paired seeds",
}
COST_SHORT = {
    "d": "the subset's selection + pre-training over the entire pool's pre-training",
    "e": "pre-training at the lower over the highest resolution",
}
# How the sentences name each headline metric (findings.headline_metric).
METRIC_WORDS = {"top1": "top-1 accuracy", "ap50": "AP50 (detection targets)",
                "miou": "mIoU (segmentation targets)"}


def statistics_text(metrics: list[str]) -> str:
    """What a difference is: in points of the metrics compared (each target's own)."""
    words = " / ".join(METRIC_WORDS.get(m, m) for m in metrics or ["top1"])
    return (f"difference = compared − against in points of {words}, paired on seed; 95 % "
            "Student-t interval of the per-seed differences; verdict: better if the "
            "interval is above 0, worse if below, else no significant difference")


def title_of(finding: Finding) -> str:
    title = WORDING[finding.letter][0]
    if finding.letter == "c" and finding.comparisons:
        pairs = {(c.subject.budget, c.baseline.budget) for c in finding.comparisons}
        if len(pairs) == 1:
            big, small = pairs.pop()
            title = f"{budget_label(big)} vs {budget_label(small)} budget (same method and resolution)"
    if finding.letter == "e" and finding.comparisons:
        pairs = {(c.subject.resolution, c.baseline.resolution) for c in finding.comparisons}
        if len(pairs) == 1:
            low, full = pairs.pop()
            title = f"Low ({low}px) vs full ({full}px) resolution (same method and budget)"
    return title


def cell_label(key: CellKey) -> str:
    if key.method == RANDOM_INIT:
        return method_label(key.method)
    if key.method == ENTIRE_POOL:
        return f"{method_label(key.method)}, {key.resolution}px"
    return f"{method_label(key.method)}, {budget_label(key.budget)}, {key.resolution}px"


def ratio_text(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.3g}×"


def describe(comparison: Comparison) -> str:
    """``Random, 6%, 224px on cars (supervised): +4.00 points, 95 % CI [...], n=3``."""
    key = comparison.subject
    text = f"{cell_label(key)} on {key.target} ({key.mode}): {comparison.paired.text()}"
    if comparison.cost_ratio is not None:
        text += f", at {ratio_text(comparison.cost_ratio)} the cost"
    return text


def comparison_sentence(finding: Finding) -> str:
    title, noun, better = WORDING[finding.letter]
    head = f"({finding.letter}) {title_of(finding)}"
    if finding.missing:
        return f"{head}: not computed: {finding.missing}."
    found = sorted(finding.comparisons, key=lambda c: c.paired.mean)
    verdicts = Counter(c.paired.verdict for c in found)
    counts = [f"{verdicts[BETTER]} of {len(found)} {noun} {better}"]
    counts += [f"{verdicts[v]} {word}" for v, word in (
        (WORSE, "worse"), (NO_DIFFERENCE, "no significant difference"),
        (ONE_SEED, "with one seed (no interval)")) if verdicts[v]]
    parts = [", ".join(counts)]
    if len(found) == 1:
        parts.append(describe(found[0]))
    else:
        parts += [f"highest: {describe(found[-1])}", f"lowest: {describe(found[0])}"]
    ratios = [c.cost_ratio for c in found if c.cost_ratio is not None]
    if ratios:
        spread = ratio_text(min(ratios)) if min(ratios) == max(ratios) else \
            f"{ratio_text(min(ratios))} to {ratio_text(max(ratios))}"
        parts.append(f"cost ratio {spread} ({COST_SHORT[finding.letter]}, device-hours)")
    if finding.unpaired:
        parts.append(f"{finding.unpaired} cell(s) left out: no counterpart with a shared seed")
    return f"{head}: " + "; ".join(parts) + "."


def composition_sentence(found: list[TargetComposition], missing: str) -> str:
    head = "(f) Which pool parts each method drew from"
    if not found:
        return f"{head}: not computed: {missing}."
    clauses = []
    for target in found:
        if target.note:
            clauses.append(target.note)
            continue
        picks = []
        for method in target.methods:
            top = method.parts[0]
            pool = (f"{top.pool_share:.0%} of the pool, {top.enrichment:.2f}×"
                    if top.pool_share and top.enrichment is not None else "pool share unknown")
            picks.append(f"{method_label(method.method)} mostly {top.part} "
                         f"({top.share:.0%} of its picks vs {pool})")
        estimate = "; pool shares estimated from the random subset" \
            if target.pool_source == FROM_RANDOM else ""
        clauses.append(f"{target.target} ({budget_label(target.budget)} budget, by "
                       f"{target.by}{estimate}): " + ", ".join(picks))
    return f"{head} (the largest budget's subset of the lowest seed; share of the subset " \
           f"vs share of the pool): " + "; ".join(clauses) + "."


def sentences(findings: Findings) -> list[str]:
    return [*(comparison_sentence(f) for f in findings.comparisons()),
            composition_sentence(findings.f, findings.f_missing)]


def intro(findings: Findings) -> str:
    seeds = ", ".join(findings.seeds)
    return (f"Computed from results.csv ({findings.runs} runs; seeds {seeds}) each time the "
            f"report is written. {statistics_text(findings.metrics)}.")


def findings_text(findings: Findings) -> str:
    """The terminal form: a heading line, then one line per finding."""
    return "\n".join(["Findings", *sentences(findings)])


def _display_order(comparisons: list[Comparison]) -> list[Comparison]:
    targets = list(dict.fromkeys(c.subject.target for c in comparisons))
    modes = list(dict.fromkeys(c.subject.mode for c in comparisons))
    known = {m: i for i, m in enumerate(method_order())}
    return sorted(comparisons, key=lambda c: (
        targets.index(c.subject.target), modes.index(c.subject.mode), -c.subject.resolution,
        c.subject.budget, known.get(c.subject.method, len(known)), c.subject.method,
        -c.baseline.resolution, c.baseline.budget))


def comparison_table(finding: Finding, metrics: list[str]) -> Table | None:
    if finding.missing:
        return None
    costs = finding.letter in COST_DEFINITION
    header = ["Target", "Mode", "Compared", "Against", "Verdict", "Seeds",
              "Difference (points)", "95 % CI", *(["Cost ratio"] if costs else [])]
    rows = []
    for c in _display_order(finding.comparisons):
        p = c.paired
        rows.append([c.subject.target, c.subject.mode, cell_label(c.subject),
                     cell_label(c.baseline), p.verdict, str(p.n), signed(p.mean),
                     p.interval_text(), *([ratio_text(c.cost_ratio)] if costs else [])])
    note = statistics_text(metrics) + (f"; {COST_DEFINITION[finding.letter]}" if costs
                                       else "") + "."
    return Table(f"({finding.letter}) {title_of(finding)}", header, rows, note=note,
                 text_columns=5)


def composition_table(found: list[TargetComposition]) -> Table | None:
    targets = [t for t in found if t.methods]
    if not targets:
        return None
    header = ["Target", "Method", "Part", "Picked", "Share of subset", "Share of pool",
              "Enrichment"]
    rows = []
    for target in targets:
        for method in target.methods:
            for part in method.parts[:PARTS_SHOWN]:
                rows.append([target.target, method_label(method.method), part.part,
                             str(part.picked), f"{part.share:.1%}",
                             "-" if part.pool_share is None else f"{part.pool_share:.1%}",
                             ratio_text(part.enrichment)])
            rest = method.parts[PARTS_SHOWN:]
            if rest:
                rows.append([target.target, method_label(method.method),
                             f"{len(rest)} more parts", str(sum(p.picked for p in rest)),
                             f"{sum(p.share for p in rest):.1%}", "", ""])
    sources = "; ".join(f"{t.target}: parts are {t.by}s, pool shares from "
                        f"{t.pool_source or 'nowhere (unknown)'}" for t in targets)
    return Table("(f) Which pool parts each method drew from", header, rows, text_columns=3,
                 note=f"enrichment = share of the subset / share of the pool (1× is what a "
                      f"random draw gives). {sources}.")


def detail_tables(findings: Findings) -> list[Table]:
    tables = [comparison_table(f, findings.metrics) for f in findings.comparisons()]
    tables.append(composition_table(findings.f))
    return [t for t in tables if t is not None]


__all__ = ["sentences", "intro", "findings_text", "detail_tables", "comparison_sentence",
           "composition_sentence", "cell_label", "describe"]
