"""Domain classifier: a ResNet-18 taught to tell target images from pool images.

Score = the classifier's logit of "target" (log P(target)/P(pool)); the logit keeps the
order among images whose probability saturates at 1.0 in float32.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from condpretrain.data.images import ImageDataset, train_transform
from condpretrain.data.sources import ImageIndex, Target
from condpretrain.models import build_resnet
from condpretrain.scoring.base import SCORERS, Scorer, map_images
from condpretrain.scoring.target_model import fit_classifier, recipe_key, trained_once


class BalancedDomainSampler(Sampler[int]):
    """Each epoch: every target image once and as many pool images, freshly drawn.

    The pool is orders of magnitude larger than the target; sampling it down per epoch
    keeps the classes balanced and lets the classifier see a different pool slice each
    epoch. Indices ``[0, n_target)`` are the target, the rest the pool.
    """

    def __init__(self, n_target: int, n_pool: int, seed: int) -> None:
        self.n_target, self.n_pool, self.seed, self.epoch = n_target, n_pool, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return 2 * self.n_target

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        pool = rng.choice(self.n_pool, size=self.n_target, replace=self.n_pool < self.n_target)
        order = np.concatenate([np.arange(self.n_target), self.n_target + pool])
        return iter(rng.permutation(order).tolist())


@SCORERS.register
class DomainClassifierScorer(Scorer):
    name = "domain-classifier"
    label = "Domain Cls."
    order = 3
    summary = "ResNet-18 trained pool-vs-target on balanced batches; score = logit of P(target)"

    def fit(self, target: Target | None, pool: ImageIndex) -> None:
        config = self.context.config
        n_target = len(target.train)
        recipe = {"target": target.train.paths, "pool": pool.paths}
        path = self.context.cache_dir / (
            f"domain-classifier-{config.dc_arch}-{recipe_key(recipe, config, 'dc')}.pt")

        def train(model: torch.nn.Module) -> tuple[torch.nn.Module, dict]:
            dataset = ImageDataset(
                target.train.paths + pool.paths, train_transform(config.filter_resolution),
                labels=np.concatenate([np.ones(n_target), np.zeros(len(pool))]).astype(np.int64),
                max_pixels=config.max_image_pixels,
            )
            return fit_classifier(model, dataset, self.context, epochs=config.dc_epochs,
                                  lr=config.dc_lr, desc="domain classifier",
                                  sampler=BalancedDomainSampler(n_target, len(pool), config.seed))

        self.model = trained_once(path, lambda: build_resnet(config.dc_arch, num_classes=2), train,
                                  self.context)
        self.context.models_used["domain_classifier"] = {
            "arch": config.dc_arch, "epochs": config.dc_epochs, "path": str(path)}

    def score(self, images: ImageIndex) -> np.ndarray:
        def target_logit(batch: torch.Tensor) -> torch.Tensor:
            logits = self.model(batch)
            return logits[:, 1] - logits[:, 0]

        return map_images(images, self.context, target_logit, 1, desc="scoring pool")[:, 0]
