"""Figures of the report as PNG bytes: no global pyplot state, no display needed.

Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas directly, so the
report renders headless and never touches the interactive backend.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from condpretrain.data.images import load_rgb
from condpretrain.errors import CondPretrainError
from condpretrain.experiment.results import RANDOM_INIT, method_label, method_order
from condpretrain.report.tables import EXTRA_METRIC_NAMES, headline_metric, number, stat

MARKERS = "os^Dv<>pPX*h"


def png_bytes(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def _method_colour(method: str) -> str:
    order = method_order()
    index = order.index(method) if method in order else len(order) + hash(method) % 5
    return f"C{index % 10}"


def seeds_per_cell(rows: list[dict[str, str]], metric: str | None = None) -> list[int]:
    """How many seeds each plotted cell has (a value in ``metric``; by default in its
    headline metric), sorted."""
    seeds: dict[tuple[str, ...], set[str]] = {}
    for r in rows:
        if (number(r.get(metric)) is not None) if metric else headline_metric(r):
            key = (r["target"], r["mode"], r["resolution"], r["budget"], r["method"])
            seeds.setdefault(key, set()).add(r["seed"])
    return sorted(len(s) for s in seeds.values())


def error_bar_caption(rows: list[dict[str, str]], metric: str | None = None) -> str:
    """``mean ± std over 3 seeds`` (or ``over 1-3 seeds`` when cells differ)."""
    counts = seeds_per_cell(rows, metric)
    if not counts:
        return "no values"
    low, high = counts[0], counts[-1]
    n = f"{low}" if low == high else f"{low}-{high}"
    if high < 2:
        return "one seed per cell: no error bars"
    return f"mean ± std over {n} seeds; bars: std of accuracy and, where it varies, of cost"


def accuracy_vs_cost(rows: list[dict[str, str]], metric: str | None = None) -> bytes:
    """One point per cell (mean over seeds): accuracy against pre-training cost, with
    error bars of the std over seeds in accuracy and, where it varies, in cost. The
    score is ``metric``, by default each target's headline (top-1, AP50 or mIoU)."""
    targets = list(dict.fromkeys(r["target"] for r in rows))
    first_mode = rows[0]["mode"] if rows else ""  # drawn solid; later modes paler
    resolutions = sorted({int(r["resolution"]) for r in rows if r["method"] != RANDOM_INIT},
                         reverse=True)
    fig = Figure(figsize=(5.2 * len(targets), 4.2))
    for t, target in enumerate(targets):
        ax = fig.add_subplot(1, len(targets), t + 1)
        cells: dict[tuple[str, str, str, str], list[dict[str, str]]] = {}
        for r in rows:
            if r["target"] == target:
                cells.setdefault((r["mode"], r["resolution"], r["budget"], r["method"]), []).append(r)
        labelled: set[str] = set()
        shown = metric or next((m for r in rows if r["target"] == target
                                if (m := headline_metric(r))), "top1")
        for (mode, res, _budget, method), group in sorted(cells.items()):
            acc = stat(number(r.get(shown)) for r in group)
            cost = stat(number(r.get("pretrain_device_hours")) for r in group)
            if acc is None:
                continue
            marker = MARKERS[resolutions.index(int(res)) % len(MARKERS)] \
                if int(res) in resolutions else "x"
            label = method_label(method) if method not in labelled else None
            labelled.add(method)
            # A cell of one seed has no spread to show: no bar rather than a bar of 0.
            ax.errorbar(cost.mean if cost else 0.0, acc.mean,
                        yerr=acc.std if acc.n > 1 else None,
                        xerr=cost.std if cost and cost.n > 1 and cost.std > 0 else None,
                        fmt=marker, color=_method_colour(method), label=label, capsize=4,
                        elinewidth=1.3, capthick=1.3, markersize=6,
                        alpha=0.9 if mode == first_mode else 0.6)
        ax.set_title(target)
        ax.set_xlabel("pre-training cost (device-hours)")
        ax.set_ylabel(f"{EXTRA_METRIC_NAMES.get(shown, shown)} (%)")  # results.csv: percent
        ax.grid(alpha=0.3)
        if t == 0:
            note = ", ".join(f"{MARKERS[i % len(MARKERS)]} {res}px"
                             for i, res in enumerate(resolutions))
            ax.legend(fontsize=7, title=f"markers: {note}" if note else None,
                      title_fontsize=7)
    return png_bytes(fig)


def contact_sheet(paths: Sequence[str], columns: int = 8, thumb: int = 40,
                  title: str = "") -> bytes:
    """A grid of the given images in order (the first is the top-scored)."""
    if not paths:
        raise CondPretrainError("contact sheet: no images")
    rows = math.ceil(len(paths) / columns)
    top = 16 if title else 0
    sheet = Image.new("RGB", (columns * (thumb + 2) + 2, rows * (thumb + 2) + 2 + top), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((3, 2), title, fill="black")
    for i, path in enumerate(paths):
        try:
            image = load_rgb(path).resize((thumb, thumb), Image.Resampling.BILINEAR)
        except Exception:  # a broken or vanished file leaves a grey square, not a crash
            image = Image.new("RGB", (thumb, thumb), (200, 200, 200))
        sheet.paste(image, (2 + (i % columns) * (thumb + 2), top + 2 + (i // columns) * (thumb + 2)))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()


def picked_histogram(names: Sequence[str], title: str, top: int = 25) -> bytes:
    """How often each pool class (or pool) was picked, most picked first."""
    counts = Counter(names).most_common(top)
    fig = Figure(figsize=(max(4.0, 0.28 * len(counts) + 1.5), 3.0))
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(range(len(counts)), [c for _, c in counts], color="C0")
    ax.set_xticks(range(len(counts)), [n for n, _ in counts], rotation=70, fontsize=7)
    ax.set_ylabel("images picked")
    ax.set_title(title, fontsize=9)
    return png_bytes(fig)


def jaccard(sets: dict[str, set[str]]) -> np.ndarray:
    names = list(sets)
    matrix = np.ones((len(names), len(names)))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i < j:
                union = len(sets[a] | sets[b])
                matrix[i, j] = matrix[j, i] = len(sets[a] & sets[b]) / union if union else 1.0
    return matrix


def jaccard_heatmap(names: list[str], matrix: np.ndarray, title: str) -> bytes:
    fig = Figure(figsize=(1.0 + 0.7 * len(names), 0.8 + 0.6 * len(names)))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    labels = [method_label(n) for n in names]
    ax.set_xticks(range(len(names)), labels, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), labels, fontsize=7)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=6,
                    color="white" if matrix[i, j] < 0.6 else "black")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    return png_bytes(fig)
