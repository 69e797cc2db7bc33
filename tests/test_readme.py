"""The experiment files README.md shows are files `run` accepts: each YAML block parses as
an experiment (a fragment, with a pool and a target added), so the documented keys, values
and their combinations stay true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from condpretrain.experiment import parse_experiment

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```yaml\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S)


def test_the_readme_has_experiment_files():
    assert len(BLOCKS) >= 4  # Table 2, VOC, a mix, the slurm section


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.split("\n", 1)[0][:40])
def test_every_yaml_block_is_an_experiment_file(block: str):
    data = yaml.safe_load(block)
    config = parse_experiment({"pool": "pool", "targets": {"t": "t"}, **data}, where="README")
    assert config.targets and config.pool


def test_the_voc_example_trains_its_targets_with_their_tasks():
    block = next(b for b in BLOCKS if "task: detect" in b)
    config = parse_experiment(yaml.safe_load(block), where="README")
    assert {t: config.target_task(t) for t in config.targets} == {"voc07": "detect",
                                                                  "voc12": "segment"}
    assert config.target_vocs("voc07") == ["/data/VOCdevkit/VOC2007", "/data/VOCdevkit/VOC2012"]
