"""Chunked scoring: a killed run resumes at its first unfinished chunk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from condpretrain.config import SelectConfig, build_config
from condpretrain.models import build_resnet, save_backbone
from condpretrain.scoring.clustering import ClusteringMinimumScorer
from condpretrain.selection import select


class Killed(Exception):
    pass


def test_killed_scoring_resumes_where_it_stopped(two_part_pool, stripes_target, tmp_path,
                                                 monkeypatch):
    torch.manual_seed(0)
    save_backbone(build_resnet("resnet10"), tmp_path / "b.pt")
    config = build_config(SelectConfig, "quick", method="clustering-min", count=10, device="cpu",
                          features_from=str(tmp_path / "b.pt"), chunk_size=20)  # 5 chunks
    select([str(two_part_pool)], str(stripes_target), tmp_path / "whole", config)

    original = ClusteringMinimumScorer.score
    calls = []

    def dies_on_third_chunk(self, images):
        calls.append(len(images))
        if len(calls) == 3:
            raise Killed
        return original(self, images)

    monkeypatch.setattr(ClusteringMinimumScorer, "score", dies_on_third_chunk)
    with pytest.raises(Killed):
        select([str(two_part_pool)], str(stripes_target), tmp_path / "resumed", config)
    assert not (tmp_path / "resumed" / "scores.npy").exists()
    assert len(list((tmp_path / "resumed").glob("partial-*/scores-*.npy"))) == 2

    calls.clear()
    monkeypatch.setattr(ClusteringMinimumScorer, "score",
                        lambda self, images: calls.append(len(images)) or original(self, images))
    select([str(two_part_pool)], str(stripes_target), tmp_path / "resumed", config)
    assert calls == [20, 20, 16]  # chunks 3..5 only
    np.testing.assert_array_equal(np.load(tmp_path / "whole" / "scores.npy"),
                                  np.load(tmp_path / "resumed" / "scores.npy"))
