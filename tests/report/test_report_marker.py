"""The report shows a selection only when its set is complete (selection.json there)."""

from __future__ import annotations

from condpretrain.report.subsets import subset_files


def test_a_subset_without_its_marker_is_left_out(tmp_path):
    for name in ("done", "unfinished"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "subset.csv").write_text("path,label,pool,score,rank\n")
    (tmp_path / "done" / "selection.json").write_text("{}")
    rows = [{"target": "t", "budget": "0.1", "method": m, "seed": "0", "select_dir": m}
            for m in ("done", "unfinished")]
    assert list(subset_files(tmp_path, rows).values()) == [tmp_path / "done" / "subset.csv"]
