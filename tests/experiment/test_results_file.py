"""A results.csv that is not a results table (binary, NUL bytes): one line, no traceback."""

from __future__ import annotations

import pytest

from condpretrain.cli import main
from condpretrain.errors import CondPretrainError
from condpretrain.experiment import parse_experiment, read_results, run


@pytest.mark.parametrize("content", [b"\xff\xfe\x00\x01binary\x89PNG", b"target,mode\x00,x\n"])
def test_a_binary_results_table_is_one_line(tmp_path, content, two_part_pool, stripes_target,
                                            capsys):
    (tmp_path / "results.csv").write_bytes(content)
    with pytest.raises(CondPretrainError, match="results.csv: not a results table"):
        read_results(tmp_path / "results.csv")
    assert main(["report", str(tmp_path)]) == 2  # the report reads it
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    experiment = parse_experiment({"pool": [str(two_part_pool)],
                                   "targets": {"t": str(stripes_target)},
                                   "methods": ["random"], "budgets": [0.5]}, where="test")
    with pytest.raises(CondPretrainError, match="not a results table"):  # so does the runner
        run(experiment, tmp_path)


def test_a_binary_experiment_file_in_out_is_not_a_traceback(tmp_path, two_part_pool,
                                                            stripes_target):
    (tmp_path / "experiment.yaml").write_bytes(b"\xff\xfe\x00binary")
    (tmp_path / "results.csv").write_bytes(b"\xff")
    experiment = parse_experiment({"pool": [str(two_part_pool)],
                                   "targets": {"t": str(stripes_target)},
                                   "methods": ["random"], "budgets": [0.5]}, where="test")
    with pytest.raises(CondPretrainError, match="results.csv: not a results table"):
        run(experiment, tmp_path)
