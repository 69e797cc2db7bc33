"""A cached scorer model is read with weights_only: a planted file never runs code."""

from __future__ import annotations

import pytest
import torch

from condpretrain.config import SelectConfig, build_config
from condpretrain.errors import CondPretrainError
from condpretrain.selection import select


class _Payload:
    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_planted_cached_model_is_one_line_and_never_run(two_part_pool, stripes_target,
                                                          tmp_path):
    config = build_config(SelectConfig, "quick", device="cpu", method="domain-classifier",
                          fraction=0.25, cache_dir=str(tmp_path / "models"))
    select([str(two_part_pool)], str(stripes_target), tmp_path / "first", config)
    [cached] = (tmp_path / "models").glob("domain-classifier-*.pt")
    marker = tmp_path / "marker"
    torch.save({"state_dict": {}, "payload": _Payload(marker)}, cached)
    with pytest.raises(CondPretrainError, match="delete it") as err:
        select([str(two_part_pool)], str(stripes_target), tmp_path / "second", config)
    assert "\n" not in str(err.value) and str(cached) in str(err.value)
    assert not marker.exists()
