"""--resume on a downstream run: a finished run is returned only for the options that made
it; an unfinished one may be extended (a longer schedule) but not otherwise changed."""

from __future__ import annotations

import json
from pathlib import Path

from condpretrain.cli import main


def test_a_finished_run_resumed_with_other_options_is_refused(tiny_voc: Path, tmp_path: Path,
                                                              capsys):
    out = tmp_path / "seg"
    args = ["segment", "--voc", str(tiny_voc), "--out", str(out), "--preset", "quick",
            "--device", "cpu", "--batch-size", "3"]
    assert main(args + ["--epochs", "1"]) == 0
    first = json.loads((out / "result.json").read_text())
    capsys.readouterr()
    assert main(args + ["--epochs", "2", "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "epochs was 1" in err
    assert main(args + ["--epochs", "1", "--lr", "0.5", "--resume"]) == 2
    assert "lr was" in capsys.readouterr().err
    # the same options: the stored result, not retrained
    assert main(args + ["--epochs", "1", "--resume"]) == 0
    assert json.loads((out / "result.json").read_text()) == first
    # unfinished (as if killed before evaluating): a longer run is fine, another lr is not
    (out / "result.json").unlink()
    assert main(args + ["--epochs", "2", "--lr", "0.5", "--resume"]) == 2
    assert "lr was" in capsys.readouterr().err
