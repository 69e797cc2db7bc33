"""The scorer registry: built-in labels and order, errors, and a method from outside."""

from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import pytest
import torch

from condpretrain.config import SelectConfig, build_config
from condpretrain.data.sources import ImageIndex, Target
from condpretrain.errors import CondPretrainError
from condpretrain.scoring import SCORERS, Scorer, ScoringContext, create_scorer
from condpretrain.scoring.base import map_images
from condpretrain.selection import select


def test_built_in_methods_in_the_papers_order_with_their_labels():
    assert SCORERS.names()[-2:] == ["knn", "density-ratio"]  # beyond the paper: after it
    assert [(name, SCORERS.label(name)) for name in SCORERS.names(having="in_paper")] == [
        ("random", "Random"),
        ("inverse-active-learning", "Inv. Active Learning"),
        ("active-learning", "Active Learning"),
        ("domain-classifier", "Domain Cls."),
        ("clustering-avg", "Clustering (Avg)"),
        ("clustering-min", "Clustering (Min)"),
    ]


def test_unknown_method_names_the_option(tmp_path):
    context = ScoringContext(build_config(SelectConfig, "quick", device="cpu"),
                             torch.device("cpu"), tmp_path)
    with pytest.raises(CondPretrainError, match="^--method: unknown .*'nope'"):
        create_scorer("nope", context)


class MeanColourScorer(Scorer):
    """Toy method: pool images whose mean colour is nearest the target's win."""

    name = "toy-mean-colour"
    summary = "minus the distance of an image's mean colour to the target's"

    def fit(self, target: Target | None, pool: ImageIndex) -> None:
        self.centre = np.nanmean(self._colours(target.train), axis=0)

    def score(self, images: ImageIndex) -> np.ndarray:
        return -np.linalg.norm(self._colours(images) - self.centre, axis=1)

    def _colours(self, images: ImageIndex) -> np.ndarray:
        return map_images(images, self.context, lambda batch: batch.float().mean(dim=(2, 3)), 3,
                          desc="mean colour")


def test_a_method_registered_from_outside_selects(two_part_pool, stripes_target, tmp_path):
    with SCORERS.registered(MeanColourScorer):
        config = build_config(SelectConfig, "quick", method="toy-mean-colour", fraction=0.5,
                              device="cpu")
        result = select([str(two_part_pool)], str(stripes_target), tmp_path, config)
    assert "toy-mean-colour" not in SCORERS
    assert result.selected == 48
    with open(tmp_path / "subset.csv") as handle:
        families = Counter(row["label"].split("_")[0] for row in csv.DictReader(handle))
    assert families == {"stripes": 48}  # the target is warm stripes (and grey rings)
