"""What the command line prints on an error: one line, no raw control characters."""

from __future__ import annotations

import errno
import os

from condpretrain import cli
from condpretrain.cli import main


def test_escape_codes_in_a_path_never_reach_the_terminal(tmp_path, capsys):
    evil = tmp_path / "\x1b[31mred\x1b[0m\nsecond line.pt"
    assert main(["export", "--backbone", str(evil), "--out", str(tmp_path / "x.pkl")]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and err.count("\n") == 1
    assert "\\x1b[31mred\\x1b[0m\\nsecond line.pt" in err  # shown, escaped


def test_an_environment_oserror_is_one_line(monkeypatch, capsys, tmp_path):
    def full(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "cache.npy"))

    monkeypatch.setattr(cli.train, "export_backbone", lambda *a: full(a))
    assert main(["export", "--backbone", "x.pt", "--out", str(tmp_path / "y.pkl")]) == 2
    assert capsys.readouterr().err == (f"condpretrain export: error: No space left on device: "
                                       f"{tmp_path / 'cache.npy'}\n")
