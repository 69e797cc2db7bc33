"""``moco:target``: a MoCo-v2 backbone trained here on the target's images (the paper's
unsupervised path: it learns VOC features with MoCo-v2).

The target's train images (labels unused, so an unlabelled target works), plus
``--moco-pool-sample N`` pool images drawn with ``--seed``, are pre-trained with
``pretrain(mode="moco")``. Training is the costly part, so it happens once: the run
lives under the selection cache in ``moco-target-<key>/``, the key hashing the images
and the MoCo recipe, and every later method, budget or resumed run loads its
``backbone.pt`` (a killed training resumes from its checkpoint). Like the target
classifier, every selection that uses it is charged what training it cost.

The select config does not record its preset, so the MoCo settings follow the scoring
resolution: at low resolution (the ``small`` and ``quick`` presets' 32 px) the pretrain
``small`` preset's MoCo settings, tuned for 16-32 px images, else the paper's. The
architecture is ``--target-arch`` and the epochs ``--moco-epochs``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
from torch import nn

from condpretrain.config import PretrainConfig, SelectConfig, build_config, options, to_dict
from condpretrain.data.sources import ImageIndex, Target, write_index_csv
from condpretrain.dist import DistContext, barrier
from condpretrain.errors import CondPretrainError
from condpretrain.features.base import FEATURES, FeatureContext, FeatureSource
from condpretrain.features.embeddings import content_key
from condpretrain.log import get_logger
from condpretrain.models import build_resnet, load_backbone
from condpretrain.train.pretrain import pretrain
from condpretrain.train.run import BACKBONE_FILE, RunDir

log = get_logger(__name__)

OPTION = "--features moco:target"
# At or below this scoring resolution the pretrain ``small`` preset's MoCo settings apply.
SMALL_IMAGES = 64


class MocoContext(FeatureContext, Protocol):
    """What training and caching the backbone needs beyond a feature context (a
    scoring context is one). ``pool`` (optional) is where ``--moco-pool-sample`` draws."""

    cache_dir: Path
    dist: DistContext

    def charge_shared(self, path: Path, recorded: dict[str, Any] | None,
                      trained_here: bool) -> None: ...


@FEATURES.register
class MocoTargetFeatures(FeatureSource):
    name = "moco"
    summary = ("moco:target: a MoCo-v2 backbone trained here on the target's images "
               "(no labels; plus --moco-pool-sample pool images), cached")
    order = 2  # with npy (listed by name): after the two built-in networks, before timm

    def network(self, target: Target | None, context: FeatureContext) -> nn.Module:
        if target is None:
            raise CondPretrainError(f"{OPTION} needs a target (--target)")
        moco_context: MocoContext = context  # type: ignore[assignment]
        config = context.config
        path = moco_backbone(target, getattr(context, "pool", None), moco_context)
        model = load_backbone(build_resnet(config.target_arch), path, config.target_arch,
                              OPTION)
        context.models_used["features"] = {
            "from": "moco:target", "backbone": str(path), "arch": config.target_arch,
            "epochs": config.moco_epochs, "pool_sample": config.moco_pool_sample}
        return model


def moco_backbone(target: Target, pool: ImageIndex | None, context: MocoContext) -> Path:
    """The cached MoCo-v2 backbone file of ``target`` (and the pool sample): trained on
    first use under ``context.cache_dir``, charged to ``context`` on every use."""
    config, dist = context.config, context.dist
    images = training_images(target, pool, config)
    pretrain_config = moco_config(config, len(images), dist.world_size)
    folder = Path(context.cache_dir) / f"moco-target-{moco_key(images, pretrain_config)}"
    run = RunDir(folder)
    trained_here = not run.finished()
    if trained_here:
        manifest = folder.with_suffix(".csv")
        if dist.is_main:  # absolute paths; no labels: MoCo reads none
            write_index_csv(manifest, ImageIndex([str(Path(p).absolute()) for p in images],
                                                 [""] * len(images), [""] * len(images)))
        barrier(dist)
        log.info("training the MoCo-v2 backbone of %s on %d images (%d epochs) in %s",
                 target.name, len(images), pretrain_config.epochs, folder)
        # resume: a run killed part-way goes on from its checkpoint, same images and recipe
        pretrain(str(manifest), folder, pretrain_config, resume=True)
    else:
        log.info("reusing %s", folder / BACKBONE_FILE)
    cost = run.read_cost() or {}
    context.charge_shared(folder, {"seconds": cost.get("wall_seconds"),
                                   "processes": cost.get("device_count", 1)}, trained_here)
    return folder / BACKBONE_FILE


def training_images(target: Target, pool: ImageIndex | None, config: SelectConfig) -> list[str]:
    """The target's train images, then ``--moco-pool-sample`` pool images (seeded draw,
    in pool order)."""
    paths = list(target.train.paths)
    wanted = config.moco_pool_sample
    if wanted == 0:
        return paths
    if pool is None:
        raise CondPretrainError(f"--moco-pool-sample: {OPTION} was given no pool to draw "
                                "from here; use --moco-pool-sample 0")
    rng = np.random.default_rng(config.seed)
    drawn = np.sort(rng.choice(len(pool), size=min(wanted, len(pool)), replace=False))
    return paths + [pool.paths[i] for i in drawn]


def moco_config(config: SelectConfig, images: int, world_size: int) -> PretrainConfig:
    """The pretrain settings of the MoCo-v2 backbone, read off the select settings."""
    # MoCo drops each epoch's incomplete batch: a batch must fit in each process's share.
    share = images // world_size
    if share < 2:
        raise CondPretrainError(f"{OPTION}: {images} training image(s) over {world_size} "
                                "process(es) is too few for MoCo-v2 (two per process at least)")
    preset = "small" if config.filter_resolution <= SMALL_IMAGES else "paper"
    return build_config(
        PretrainConfig, preset, mode="moco", arch=config.target_arch,
        resolution=config.filter_resolution, epochs=config.moco_epochs,
        batch_size=min(config.batch_size, share), seed=config.seed, workers=config.workers,
        device=config.device, amp=config.amp, deterministic=config.deterministic,
        max_image_pixels=config.max_image_pixels)


def moco_key(images: list[str], config: PretrainConfig) -> str:
    """A short hash of the training images and every setting that changes the weights
    (neutral ones, which change only where or how fast it runs, left out)."""
    neutral = {opt.name for opt in options(PretrainConfig) if opt.neutral}
    return content_key({k: v for k, v in to_dict(config).items() if k not in neutral}, images)


__all__ = ["MocoTargetFeatures", "moco_backbone", "moco_config", "training_images"]
