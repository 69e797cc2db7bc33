"""Assemble the report of an experiment folder from its ``results.csv`` and subsets."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from condpretrain import atomic
from condpretrain.errors import CondPretrainError
from condpretrain.experiment.results import (
    RESULTS_FILE,
    as_shown,
    budget_key,
    budget_label,
    method_label,
    read_results,
)
from condpretrain.log import get_logger
from condpretrain.report import plots
from condpretrain.report.findings import Findings, compute_findings
from condpretrain.report.findings_text import detail_tables, findings_text, intro, sentences
from condpretrain.report.html import (
    Block,
    BulletList,
    Heading,
    Paragraph,
    Picture,
    Section,
    markdown_table,
    pictures,
    to_html,
    to_markdown,
)
from condpretrain.report.paired import seed_order
from condpretrain.report.plan_table import plan_blocks
from condpretrain.report.subsets import read_subset, subset_files
from condpretrain.report.tables import (
    Table,
    all_tables,
    timing_table,
    total_cost_table,
)

log = get_logger(__name__)
TOP_IMAGES = 48


@dataclass
class ReportResult:
    markdown: Path
    html: Path
    figures: list[Path] = field(default_factory=list)
    # what the CLI prints: the Findings sentences, then the Table-2 tables as markdown
    table_text: str = ""
    findings_text: str = ""  # the Findings sentences alone, one line each


def write_report(out_dir: str | Path) -> ReportResult:
    out = Path(out_dir)
    results = out / RESULTS_FILE
    if not results.is_file():
        raise CondPretrainError(f"{out}: no {RESULTS_FILE} here; run `condpretrain run` first")
    rows = as_shown(read_results(results))
    if not rows:
        raise CondPretrainError(f"{results}: the results table has no rows yet")
    title = f"Conditional pre-training: {_experiment_name(out)}"
    tables = all_tables(rows)
    findings = compute_findings(rows, out)
    blocks: list[Block] = [
        findings_section(findings),
        Paragraph(f"{len(rows)} runs over {len({r['target'] for r in rows})} target(s); "
                  f"seeds: {', '.join(sorted({r['seed'] for r in rows}, key=seed_order))}."),
        Heading("Results in the layout of the paper's Table 2"),
        *tables,
        Heading("Accuracy against pre-training cost"),
        Picture("each target's score (top-1 accuracy; AP50 of a detection target, mIoU of "
                "a segmentation one) vs pre-training device-hours, one point per cell "
                f"({plots.error_bar_caption(rows)})",
                "figures/accuracy_vs_cost.png", plots.accuracy_vs_cost(rows)),
        Heading("Selection time apart from pre-training time"),
        timing_table(rows),
        total_cost_table(rows),
        *plan_blocks(out, rows),
    ]
    blocks += _selection_blocks(out, rows)
    blocks += _eval_duplicate_blocks(out, rows)
    figures = []
    for picture in pictures(blocks):
        atomic.write_bytes(out / picture.filename, picture.png)
        figures.append(out / picture.filename)
    atomic.write_text(out / "report.md", to_markdown(title, blocks))
    atomic.write_text(out / "report.html", to_html(title, blocks))
    summary = findings_text(findings)
    text = "\n\n".join([summary, *(f"{t.title}\n{markdown_table(t)}" for t in tables)])
    log.info("report written to %s", out / "report.html")
    return ReportResult(out / "report.md", out / "report.html", figures, text, summary)


def findings_section(findings: Findings) -> Section:
    """The Findings, first in the report: one sentence per finding, then the details."""
    return Section("findings", "Findings", [
        Paragraph(intro(findings)), BulletList(sentences(findings)),
        *detail_tables(findings)])


def _experiment_name(out: Path) -> str:
    try:
        data = yaml.safe_load((out / "experiment.yaml").read_text(encoding="utf-8"))
        return str(data.get("name") or out.name)
    except (OSError, yaml.YAMLError, AttributeError):
        return out.name


def _image_path(path: str, subset_csv: Path) -> str:
    p = Path(path)
    return str(p if p.is_absolute() else subset_csv.parent / p)


def _selection_blocks(out: Path, rows: list[dict[str, str]]) -> list[Block]:
    subsets = subset_files(out, rows)
    if not subsets:
        return []
    blocks: list[Block] = [Heading("What each method picked")]
    by_target: dict[str, dict[str, dict[str, Path]]] = defaultdict(lambda: defaultdict(dict))
    for (target, budget, method), path in subsets.items():
        by_target[target][budget][method] = path
    for target, budgets in by_target.items():
        blocks.append(Heading(f"Target {target}", 3))
        largest = max(budgets, key=float)
        for method, path in budgets[largest].items():
            picked = read_subset(path)
            if not picked:
                continue
            slug = f"{_slug(target)}_{_slug(method)}"
            top = [_image_path(r["path"], path) for r in picked[:TOP_IMAGES]]
            pools = {r.get("pool", "") for r in picked}
            by_pool = len(pools) > 1
            names = [r.get("pool", "") if by_pool else r.get("label", "") for r in picked]
            blocks += [
                Picture(f"{method_label(method)}: top-{len(top)} scored pool images",
                        f"figures/top_{slug}.png", plots.contact_sheet(top)),
                Picture(f"{method_label(method)}: picked {'pools' if by_pool else 'classes'} "
                        f"({budget_label(float(largest))} budget)",
                        f"figures/picked_{slug}.png",
                        plots.picked_histogram(names, f"{target}: {method_label(method)}")),
            ]
        for budget in sorted(budgets, key=float):
            methods = budgets[budget]
            if len(methods) < 2:
                continue
            sets = {m: {r["path"] for r in read_subset(p)} for m, p in methods.items()}
            names = list(sets)
            matrix = plots.jaccard(sets)
            label = f"{target}, {budget_label(float(budget))} budget"
            blocks.append(Picture(f"Jaccard overlap of the subsets: {label}",
                                  f"figures/jaccard_{_slug(target)}_b{budget_key(float(budget) * 100)}.png",
                                  plots.jaccard_heatmap(names, matrix, label)))
            blocks.append(_jaccard_table(names, matrix, label))
    return blocks


def _jaccard_table(names: list[str], matrix: np.ndarray, label: str) -> Table:
    header = ["", "Method", *[method_label(n) for n in names]]
    rows = [["", method_label(a), *[f"{matrix[i, j]:.2f}" for j in range(len(names))]]
            for i, a in enumerate(names)]
    return Table(f"Jaccard overlap: {label}", header, rows,
                 note="|A ∩ B| / |A ∪ B| of the images two methods picked (lowest seed).")


EVAL_DUPLICATE_ROWS = 20  # per target; eval_duplicates.csv in the selection has them all


def _eval_duplicate_blocks(out: Path, rows: list[dict[str, str]]) -> list[Block]:
    """Per target, the pool images that copy its test/val images (from the first
    selection that searched; every selection of a target finds the same ones)."""
    found: dict[str, dict] = {}
    for r in rows:
        if r["target"] in found or not r.get("select_dir"):
            continue
        folder = Path(r["select_dir"])
        meta = atomic.read_json((folder if folder.is_absolute() else out / folder)
                                / "selection.json", default={})
        block = meta.get("eval_duplicates") if isinstance(meta, dict) else None
        if isinstance(block, dict) and block.get("searched"):
            found[r["target"]] = block
    if not found:
        return []
    table_rows = []
    for target, block in found.items():
        listed = block.get("list") or []
        if not listed:
            table_rows.append([target, "none found",
                               f"{block.get('eval_images', '?')} evaluation images searched",
                               "", "", ""])
        for d in listed[:EVAL_DUPLICATE_ROWS]:
            table_rows.append([target, _short(d["path"]), _short(d["matched"]),
                               str(d["hamming"]), f"{d['cosine']:.3f}",
                               "yes" if d["flipped"] else "no"])
        if len(listed) > EVAL_DUPLICATE_ROWS:
            table_rows.append([target, f"... {len(listed) - EVAL_DUPLICATE_ROWS} more",
                               block.get("file", ""), "", "", ""])
    kept = any(not b.get("excluded", True) for b in found.values())
    note = ("Pool images that are exact or near copies (resized, re-encoded, mirrored) of a "
            "target's test/val images: pHash Hamming distance (of 63 bits) and thumbnail "
            "cosine. " + ("Some selections kept them (--keep-eval-duplicates)." if kept else
                          "They were left out of every subset."))
    return [Heading("Evaluation images found in the pool"),
            Table("Copies of evaluation images in the pool", ["Target", "Pool image",
                  "Matched evaluation image", "Hamming", "Cosine", "Flipped"], table_rows,
                  note=note, text_columns=3)]


def _short(path: str) -> str:
    """The last two parts of a path: enough to find the image, short enough for a table."""
    return "/".join(Path(path).parts[-2:])


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)


__all__ = ["ReportResult", "write_report", "read_subset", "findings_section"]
