"""``select``: score a source pool against a target and keep a budget of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from condpretrain.config import common
from condpretrain.config.base import Config
from condpretrain.config.options import option
from condpretrain.errors import CondPretrainError
from condpretrain.registry import SCORERS


@dataclass
class SelectConfig(Config):
    """Score a source pool against a target and keep a budget of it."""

    method: str = option("domain-classifier", "how pool images are scored (see "
                         "`condpretrain methods`)", choices=SCORERS.choices(), grid=True)
    fraction: float | None = option(None, "budget as a share of the pool, e.g. 0.06 or 0.12",
                                    low=0, high=1, low_open=True, grid=True, neutral=True)
    count: int | None = option(None, "budget as a number of images", low=1, grid=True,
                               neutral=True)
    seed: int = common.seed(grid=True,
                            what="random seed (ties, random scores, model initialisation)")
    # Filtering always runs at 224 px in the paper, whatever the pre-training resolution.
    filter_resolution: int = option(224, "resolution (px) images are scored at", low=0,
                                    low_open=True)
    batch_size: int = option(256, "images per batch when scoring and training the scorer "
                             "models", low=0, low_open=True, neutral=True)
    workers: int = common.workers()
    device: str = common.device()
    amp: bool = common.amp(neutral=True)
    deterministic: bool = common.deterministic()
    max_image_pixels: int = common.max_image_pixels()
    cache_dir: str | None = option(None, "where the scorer models are cached (OUT/cache when "
                                   "unset)", grid=True, metavar="DIR")
    # Scores are saved every chunk, so a killed run loses at most one chunk of work.
    chunk_size: int = option(50_000, "images per saved chunk of scores (the resume "
                             "granularity)", low=1, neutral=True)
    dc_arch: str = option("resnet18", "domain classifier architecture")
    dc_epochs: int = option(10, "domain classifier epochs", low=0)
    dc_lr: float = option(0.01, "domain classifier learning rate", low=0, low_open=True)
    target_arch: str = option("resnet18", "architecture of the target-trained model "
                              "(clustering and active learning share it)")
    target_epochs: int = option(30, "target-trained model epochs", low=0)
    target_lr: float = option(0.01, "target-trained model learning rate", low=0, low_open=True)
    features_from: str | None = option(None, "backbone file whose features clustering uses "
                                       "(e.g. MoCo-v2); the target-trained model when unset",
                                       metavar="CKPT")
    clusters: int = option(200, "k-means K", low=0, low_open=True)
    kmeans_iters: int = option(25, "k-means iterations", low=0, low_open=True)
    # Neutral: scores do not depend on it, only which images may be chosen from them.
    keep_eval_duplicates: bool = option(False, "let pool images that are copies (exact, "
                                        "resized, re-encoded or mirrored) of the target's "
                                        "test/val images be selected; they are found and "
                                        "listed either way", neutral=True)

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {},
        "small": {
            "filter_resolution": 32,
            "batch_size": 128,
            "workers": 0,
            "dc_arch": "resnet10",
            "dc_epochs": 4,
            "dc_lr": 0.05,
            "target_arch": "resnet10",
            "target_epochs": 15,
            "target_lr": 0.05,
            "clusters": 20,
            "kmeans_iters": 20,
            "chunk_size": 5_000,
        },
        "quick": {
            "filter_resolution": 32,
            "batch_size": 64,
            "workers": 0,
            "dc_arch": "resnet10",
            "dc_epochs": 3,
            "dc_lr": 0.05,
            "target_arch": "resnet10",
            "target_epochs": 5,
            "target_lr": 0.05,
            "clusters": 20,
            "kmeans_iters": 10,
            "chunk_size": 5_000,
        },
    }

    def check(self) -> None:
        if self.fraction is not None and self.count is not None:
            raise CondPretrainError("give either --fraction or --count, not both")
