"""report.html as a reader sees it: opened in a real headless Chromium (DevTools pipe).

Without a browser these tests fail (CI installs Debian's chromium in .ci/run); set
CONDPRETRAIN_NO_BROWSER=1 to skip them on a machine that cannot have one.
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys
from pathlib import Path

import pytest
from imagegen import make_image_folder
from PIL import Image

from condpretrain.errors import CondPretrainError
from condpretrain.experiment import write_results
from condpretrain.report.browser import ReportView, find_browser, inspect_report, screenshot
from condpretrain.report.build import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def browser() -> str:
    try:
        return find_browser()
    except CondPretrainError as exc:
        if os.environ.get("CONDPRETRAIN_NO_BROWSER") == "1":
            pytest.skip(f"CONDPRETRAIN_NO_BROWSER=1: {exc}")
        pytest.fail(f"{exc} (.ci/run installs it; CONDPRETRAIN_NO_BROWSER=1 skips this test)")


def _row(method: str, budget: float, seed: int, top1: float, select_dir: str = "") -> dict:
    return {"target": "cars", "mode": "supervised", "budget": str(budget), "method": method,
            "resolution": "0" if method == "random-init" else "32", "seed": str(seed),
            "top1": str(top1), "pretrain_device_hours": str(10 * budget),
            "select_device_hours": "0.5" if select_dir else "", "select_dir": select_dir}


def _selection(out: Path, method: str, images: list[Path]) -> str:
    """A finished selection folder (subset.csv + its selection.json marker) picking images."""
    folder = out / "select" / method
    folder.mkdir(parents=True)
    lines = ["path,label,rank", *(f"{p},{p.parent.name},{i}" for i, p in enumerate(images))]
    (folder / "subset.csv").write_text("\n".join(lines) + "\n")
    (folder / "selection.json").write_text(json.dumps({}))
    return str(folder.relative_to(out))


@pytest.fixture(scope="module")
def built_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report with every kind of figure: cost plot, contact sheets, histograms, Jaccard."""
    out = tmp_path_factory.mktemp("results")
    pool = sorted(make_image_folder(out / "pool", {"a": "stripes", "b": "noise"},
                                    per_class=6).rglob("*.png"))
    picks = {"random": pool[::2], "domain-classifier": pool[:6]}
    rows = []
    for seed in (0, 1):
        rows.append(_row("random-init", 0, seed, 40.0 + seed))
        for k, (method, images) in enumerate(picks.items()):
            folder = _selection(out, method, images) if seed == 0 else ""
            rows.append(_row(method, 0.5, seed, 50.0 + 3 * k + seed, folder))
    write_results(out / "results.csv", rows)
    return write_report(out).html


@pytest.fixture(scope="module")
def report_view(browser: str, built_report: Path) -> ReportView:
    return inspect_report(built_report)


def test_every_figure_of_the_report_loads(report_view: ReportView, built_report: Path):
    embedded = built_report.read_text().count("<img ")
    assert embedded >= 4  # cost plot, two contact sheets, two histograms, a Jaccard map
    assert report_view.images == embedded
    assert report_view.failed_images == []


def test_findings_are_visible_in_the_report(report_view: ReportView):
    assert report_view.findings_present, 'report.html has no element with id="findings"'
    assert report_view.findings_visible, "the findings element is hidden or has no size"
    assert report_view.findings_text.strip(), "the findings element is empty"


def _png_uri(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "teal").save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@pytest.fixture(scope="module")
def hand_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    page = tmp_path_factory.mktemp("page") / "page.html"
    page.write_text(
        "<!DOCTYPE html><html><body>"
        f'<img alt="good figure" src="{_png_uri(30, 20)}">'
        '<img alt="broken figure" src="data:image/png;base64,bm90IGEgcG5n">'
        '<div style="display:none"><div id="findings">hidden findings</div></div>'
        "</body></html>")
    return page


def test_broken_images_and_hidden_findings_are_reported(browser: str, hand_page: Path):
    view = inspect_report(hand_page)
    assert view.images == 2
    assert len(view.failed_images) == 1 and view.failed_images[0].startswith("broken figure (")
    assert view.findings_present and not view.findings_visible and view.findings_text == ""


def test_screenshot_writes_a_png_of_the_window(browser: str, hand_page: Path, tmp_path: Path):
    png = screenshot(hand_page, tmp_path / "shots" / "page.png", width=320, height=200)
    assert png.read_bytes().startswith(PNG_MAGIC)
    with Image.open(png) as image:
        assert image.size == (320, 200)
        assert image.getpixel((10, 10))[:3] == (0, 128, 128)  # the teal figure, top left


def _fake_browser(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "fake-browser"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return script


def test_a_browser_that_dies_is_a_one_line_error(tmp_path: Path, hand_page: Path,
                                                 monkeypatch: pytest.MonkeyPatch):
    fake = _fake_browser(tmp_path, "echo 'noise' >&2\necho 'fatal: no display' >&2\nexit 3")
    monkeypatch.setenv("CONDPRETRAIN_BROWSER", str(fake))
    with pytest.raises(CondPretrainError, match="exited with status 3: fatal: no display$"):
        inspect_report(hand_page)


def test_a_browser_that_hangs_times_out(tmp_path: Path, hand_page: Path,
                                        monkeypatch: pytest.MonkeyPatch):
    hang = f"exec '{sys.executable}' -c 'import time; time.sleep(60)'"
    monkeypatch.setenv("CONDPRETRAIN_BROWSER", str(_fake_browser(tmp_path, hang)))
    with pytest.raises(CondPretrainError, match="did not answer within 0.5 s"):
        inspect_report(hand_page, timeout=0.5)


def test_no_browser_and_no_report_are_one_line_errors(tmp_path: Path, hand_page: Path,
                                                      monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CONDPRETRAIN_BROWSER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CondPretrainError, match="no browser to open the report"):
        find_browser()
    monkeypatch.setenv("CONDPRETRAIN_BROWSER", str(tmp_path / "missing"))
    with pytest.raises(CondPretrainError, match="CONDPRETRAIN_BROWSER=.*not an executable"):
        find_browser()
    with pytest.raises(CondPretrainError, match="no such report file"):
        inspect_report(tmp_path / "report.html")
