"""The number of loader workers changes nothing a scorer's model learns: augmentation is
seeded per sample from (seed, epoch, index), not drawn from each worker's RNG."""

from __future__ import annotations

from condpretrain.config import SelectConfig, build_config
from condpretrain.selection import select


def test_domain_classifier_subset_is_the_same_with_0_and_2_workers(two_part_pool,
                                                                   stripes_target, tmp_path):
    outputs = []
    for workers in (0, 2):
        out = tmp_path / f"workers{workers}"
        select([str(two_part_pool)], str(stripes_target), out,
               build_config(SelectConfig, "quick", device="cpu", method="domain-classifier",
                            fraction=0.25, workers=workers, cache_dir=str(out / "models")))
        outputs.append(((out / "scores.npy").read_bytes(), (out / "subset.csv").read_bytes()))
    assert outputs[0][0] == outputs[1][0]  # scores.npy
    assert outputs[0][1] == outputs[1][1]  # subset.csv
