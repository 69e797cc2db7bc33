"""Pre-train a backbone on a selected subset of a pool (or the whole pool).

The method (``--mode``) is looked up in ``PRETRAIN_METHODS`` (``train.methods``: e.g.
``supervised`` on the pool's own labels, ``moco`` for MoCo-v2); this module does what
every method shares: the subset's images from the pre-resized cache at
``--resolution``, the run folder, the training loop, and ``backbone.pt`` at the end.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from condpretrain import runlock
from condpretrain.config import PretrainConfig, to_dict
from condpretrain.data.sources import ImageIndex, open_pool, read_index_csv
from condpretrain.device import compile_model, device_kind, prepare_model, seed_everything
from condpretrain.dist import DistContext, distributed, wrap_ddp
from condpretrain.errors import CondPretrainError
from condpretrain.models import build_resnet, flops_per_image, load_backbone, save_backbone
from condpretrain.train import common
from condpretrain.train.common import RunResult
from condpretrain.train.data import AugmentedDataset, EpochLoader
from condpretrain.train.loop import Metrics, Recorder, Schedule, Trainer, restore
from condpretrain.train.methods import PRETRAIN_METHODS, PretrainMethod
from condpretrain.train.run import BACKBONE_FILE, CostMeter, RunDir


def pretrain(
    sources: list[str] | str,
    out: str | Path,
    config: PretrainConfig | None = None,
    subset: str | Path | None = None,
    resume: bool = False,
) -> RunResult:
    """Pre-train on ``subset`` (a subset.csv of the pool ``sources``; None: all of it)."""
    config = config or PretrainConfig()
    config.validate()
    method_class = PRETRAIN_METHODS.get_class(config.mode)
    with distributed(config.device, config.deterministic) as (ctx, device), \
            runlock.hold(out, ctx):
        # The world size is known here: an lr rule scales with the global batch.
        method = method_class(config, world_size=ctx.world_size)
        return _pretrain(sources, Path(out), method, subset, resume, ctx, device)


def _pretrain(sources, out: Path, method: PretrainMethod, subset, resume: bool,
              ctx: DistContext, device: torch.device) -> RunResult:
    config = method.config
    run = RunDir(out, ctx.rank)
    index = training_index(sources, subset)
    classes, labels = pool_labels(index, config.mode) if method.needs_labels else ([], None)
    inputs = {"sources": [sources] if isinstance(sources, str) else list(sources),
              "subset": str(subset) if subset else None,
              common.IMAGES_KEY: common.images_fingerprint(index.paths, index.labels)}
    resolved = {**to_dict(config), "arch": method.arch, "epochs": method.epochs,
                "lr": method.lr}
    done = common.open_run(run, config, inputs, resume, resolved)
    if done is not None:
        return done
    if config.init:  # a bad --init fails now, not after the image cache is built
        load_backbone(build_resnet(method.arch), config.init, method.arch)
    run.save_config({"command": "pretrain", "inputs": inputs, "config": resolved,
                     "images": len(index), "world_size": ctx.world_size, "classes": classes})

    source = common.image_source(index.paths, config.resolution, cache=config.cache,
                                 cache_dir=config.cache_dir, run=run, workers=config.workers,
                                 max_pixels=config.max_image_pixels, ctx=ctx)
    seed_everything(config.seed)  # after the cache: building it draws from the RNG
    model = prepare_model(method.build(len(classes), len(index),
                                       config.batch_size * ctx.world_size), device)
    dataset = AugmentedDataset(source, method.augment(), labels, seed=config.seed,
                               views=method.views)
    optimizer = torch.optim.SGD(model.parameters(), lr=method.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    trainer = Trainer(method.task(compile_model(wrap_ddp(model, device, ctx), config.compile)),
                      optimizer,
                      method.scheduler(optimizer), device, config.amp, desc="pretrain",
                      dist_ctx=ctx)
    resumed = restore(run, trainer, resume)
    info = {"command": "pretrain", "mode": config.mode, "arch": method.arch,
            "resolution": config.resolution, **method.info()}
    cost = CostMeter.start(resumed.cost, device_kind=device_kind(device),
                           device_count=ctx.world_size,
                           flops_per_image=flops_per_image(method.arch, config.resolution))
    cost.add_cache(common.cache_seconds([source]))

    loader = EpochLoader(dataset, batch_size=config.batch_size, workers=config.workers,
                         seed=config.seed, rank=ctx.rank, world=ctx.world_size, shuffle=True,
                         drop_last=method.drop_last, pin=device.type == "cuda")

    def on_line(metrics: Metrics) -> dict:
        return {"accuracy": metrics.accuracy}

    history = trainer.run(loader, Schedule.by_epochs(method.epochs), position=resumed.position,
                          recorder=Recorder(run, cost, method.flop_factor, info,
                                            config.checkpoint_minutes * 60, on_line=on_line))
    if ctx.is_main:
        save_backbone(method.backbone(model), run.file(BACKBONE_FILE))
    metrics = run.read_metrics()
    final = metrics[-1] if metrics else (history[-1].as_dict() if history else {})
    result = {"mode": config.mode, "arch": method.arch, "resolution": config.resolution,
              "epochs": method.epochs, "images": len(index), "classes": len(classes),
              "final_loss": final.get("loss"), "final_accuracy": final.get("accuracy"),
              "backbone": str(run.file(BACKBONE_FILE))}
    return common.complete(run, cost, result, ctx, **info)


def training_index(sources: list[str] | str, subset: str | Path | None) -> ImageIndex:
    """The pool's images named by ``subset`` (all of the pool without one)."""
    pool = open_pool(sources)
    if subset is None:
        return pool
    wanted = read_index_csv(subset, option="--subset")
    if len(wanted) == 0:
        raise CondPretrainError(f"--subset: {subset} lists no images")
    position = {_key(path): i for i, path in enumerate(pool.paths)}
    rows = []
    for path in wanted.paths:
        i = position.get(_key(path))
        if i is None:
            raise CondPretrainError(
                f"--subset: {subset} names {path}, which is not in the pool given by --source")
        rows.append(i)
    return pool.take(rows)


def pool_labels(index: ImageIndex, mode: str) -> tuple[list[str], np.ndarray]:
    """Classes present in the subset (``pool/label`` when it spans pools) and label ids,
    for a method (``mode``) that trains on them."""
    unlabelled = next((p for p, label in zip(index.paths, index.labels, strict=True)
                       if not label), None)
    if unlabelled is not None:
        raise CondPretrainError(
            f"--mode {mode} needs labelled pool images, but {unlabelled} has no label "
            "(use an ImageFolder or a CSV with labels, or --mode moco)")
    several = len(set(index.pools)) > 1
    keys = [f"{pool}/{label}" if several else label
            for pool, label in zip(index.pools, index.labels, strict=True)]
    classes = sorted(set(keys))
    lookup = {name: i for i, name in enumerate(classes)}
    return classes, np.array([lookup[k] for k in keys], dtype=np.int64)


def _key(path: str) -> str:
    return os.path.normcase(os.path.abspath(path))
