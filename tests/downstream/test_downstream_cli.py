"""End to end through the CLI on a tiny drawn VOC folder, a few CPU iterations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vocgen import annotation_xml

from condpretrain.cli import main
from condpretrain.models import build_resnet, save_backbone


@pytest.fixture
def backbone(tmp_path: Path) -> Path:
    path = tmp_path / "backbone.pt"
    save_backbone(build_resnet("resnet10"), path)
    return path


def _read(run: Path, name: str) -> dict:
    return json.loads((run / name).read_text())


def test_detect_end_to_end(tiny_voc: Path, backbone: Path, tmp_path: Path, capsys):
    out = tmp_path / "det"
    code = main(["detect", "--voc", str(tiny_voc), "--init", str(backbone), "--out", str(out),
                 "--preset", "quick", "--iterations", "2", "--device", "cpu"])
    assert code == 0
    result = _read(out, "result.json")
    assert {"AP50", "AP", "AP75", "coco", "per_class_AP50"} <= set(result)
    assert 0.0 <= result["AP50"] <= 100.0 and result["iterations"] == 2
    assert _read(out, "run.json")["status"] == "done"
    assert (out / "checkpoint.pt").is_file() and (out / "config.yaml").is_file()
    assert "AP50" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_segment_end_to_end_and_resume(tiny_voc: Path, backbone: Path, tmp_path: Path):
    out = tmp_path / "seg"
    args = ["segment", "--voc", str(tiny_voc), "--init", str(backbone), "--out", str(out),
            "--preset", "quick", "--device", "cpu", "--batch-size", "3"]
    assert main(args + ["--epochs", "1"]) == 0
    first = _read(out, "result.json")
    assert {"mIoU", "mAcc", "allAcc"} <= set(first) and 0 <= first["mIoU"] <= 1
    assert main(args + ["--epochs", "1"]) == 2  # refuses to overwrite a run
    (out / "result.json").unlink()  # as if killed before evaluating: continue to epoch 2
    assert main(args + ["--epochs", "2", "--resume"]) == 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["iteration"] for row in lines] == [2, 4]  # 6 images / batch 3 = 2 per epoch
    assert _read(out, "run.json")["sessions"] == 2


def test_wrong_arch_backbone_is_one_line(tiny_voc: Path, backbone: Path, tmp_path: Path, capsys):
    code = main(["detect", "--voc", str(tiny_voc), "--init", str(backbone), "--out",
                 str(tmp_path / "x"), "--preset", "quick", "--arch", "resnet18"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "does not fit resnet18" in err


def test_bad_annotation_is_one_line_naming_file(tiny_voc: Path, tmp_path: Path, capsys):
    xml = tiny_voc / "Annotations" / "000007.xml"  # in the test split
    xml.write_text(annotation_xml("000007", 48, [("car", 0, 5, 20, 20)]))
    code = main(["detect", "--voc", str(tiny_voc), "--out", str(tmp_path / "x"),
                 "--preset", "quick"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and str(xml) in err and "outside" in err
