"""Pre-train a backbone on a selected subset of a pool (or the whole pool).

``supervised``: the pool's own labels, only the classes present in the subset (keyed by
``pool/label`` when the subset spans several pools). ``moco``: MoCo-v2. Both train from
the pre-resized cache at ``--resolution`` and leave ``backbone.pt`` in the run folder.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from condpretrain.config import PretrainConfig, to_dict
from condpretrain.data.sources import ImageIndex, open_pool, read_index_csv
from condpretrain.device import device_kind, prepare_model, seed_everything
from condpretrain.errors import CondPretrainError
from condpretrain.log import get_logger
from condpretrain.models import build_resnet, flops_per_image, load_backbone, save_backbone
from condpretrain.train import common
from condpretrain.train.common import RunResult
from condpretrain.train.data import (
    AugmentedDataset,
    make_loader,
    moco_v2_augment,
    supervised_augment,
)
from condpretrain.train.dist import barrier, init_distributed, shutdown
from condpretrain.train.loop import EpochMetrics, Trainer, restore_position
from condpretrain.train.moco import MoCo, MocoTask, clamp_queue
from condpretrain.train.run import BACKBONE_FILE, CostMeter, RunDir
from condpretrain.train.supervised import SupervisedTask

log = get_logger(__name__)

# Training FLOPs per image as multiples of one forward pass: forward + backward ~ 3x;
# MoCo adds the key encoder's forward of the second view (no backward): 4x.
FLOP_FACTOR = {"supervised": 3.0, "moco": 4.0}


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
    ctx, device = init_distributed(config.device)
    try:
        return _pretrain(sources, Path(out), config, subset, resume, ctx, device)
    finally:
        shutdown(ctx)


def _pretrain(sources, out: Path, config: PretrainConfig, subset, resume: bool, ctx,
              device: torch.device) -> RunResult:
    run = RunDir(out, ctx.rank)
    if resume and run.finished():
        log.info("%s is already finished", out)
        return common.finished(run)
    run.prepare(resume)
    arch, epochs, lr = config.resolved_arch(), config.resolved_epochs(), config.resolved_lr()
    index = training_index(sources, subset)
    classes, labels = supervised_labels(index) if config.mode == "supervised" else ([], None)
    inputs = {"sources": [sources] if isinstance(sources, str) else list(sources),
              "subset": str(subset) if subset else None}
    resolved = {**to_dict(config), "arch": arch, "epochs": epochs, "lr": lr}
    if resume:
        common.check_resume(run, resolved, inputs)
    run.save_config({"command": "pretrain", "inputs": inputs, "config": resolved,
                     "images": len(index), "world_size": ctx.world_size, "classes": classes})

    source = common.image_source(index.paths, config.resolution, cache=config.cache,
                                 cache_dir=config.cache_dir, run=run, workers=config.workers,
                                 max_pixels=config.max_image_pixels, ctx=ctx)
    global_batch = config.batch_size * ctx.world_size
    seed_everything(config.seed)  # after the cache: building it draws from the RNG
    if config.mode == "moco":
        queue = clamp_queue(config.moco_queue, len(index), global_batch)
        model = MoCo(arch, config.moco_dim, queue, config.moco_momentum,
                     config.moco_temperature, config.moco_mlp)
        if config.init:
            load_backbone(model.encoder_q, config.init, arch)
            model.encoder_k.load_state_dict(model.encoder_q.state_dict())
        augment, views = moco_v2_augment(config.resolution), 2
    else:
        queue = None
        model = build_resnet(arch, num_classes=len(classes))
        if config.init:
            load_backbone(model, config.init, arch)
        augment, views = supervised_augment(config.resolution), 1
    dataset = AugmentedDataset(source, augment, labels, seed=config.seed, views=views)

    model = prepare_model(model, device)
    ddp_model = common.wrap_ddp(model, device, ctx)
    task = MocoTask(ddp_model) if config.mode == "moco" else SupervisedTask(ddp_model)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scheduler = make_scheduler(optimizer, config.mode, epochs, config.lr_step_epochs,
                               config.lr_gamma)
    trainer = Trainer(task, optimizer, scheduler, device, config.amp, desc="pretrain",
                      dist_ctx=ctx)
    state = common.restore(run, trainer, resume)
    position = restore_position(state["position"] if state else None, ctx.rank)

    info = {"command": "pretrain", "mode": config.mode, "arch": arch,
            "resolution": config.resolution, "moco_queue": queue}
    cost = CostMeter.start(state["cost"] if state else None, device_kind=device_kind(device),
                           device_count=ctx.world_size,
                           flops_per_image=flops_per_image(arch, config.resolution))

    def on_epoch_end(metrics: EpochMetrics) -> None:
        cost.add_images(metrics.images, FLOP_FACTOR[config.mode])
        run.append_metrics({**metrics.as_dict(), "accuracy": metrics.accuracy})

    def loader(epoch: int, skip: int):
        return make_loader(dataset, batch_size=config.batch_size, workers=config.workers,
                           epoch=epoch, seed=config.seed, rank=ctx.rank, world=ctx.world_size,
                           shuffle=True, skip_batches=skip, drop_last=config.mode == "moco",
                           pin=device.type == "cuda")

    history = trainer.run(loader, epochs, on_epoch_end=on_epoch_end, position=position,
                          checkpoint=common.checkpointer(run, trainer, cost, info=info),
                          checkpoint_seconds=config.checkpoint_minutes * 60)
    backbone = model.encoder_q if config.mode == "moco" else model
    if ctx.is_main:
        save_backbone(backbone, run.file(BACKBONE_FILE))
    metrics = run.read_metrics()
    final = metrics[-1] if metrics else (history[-1].as_dict() if history else {})
    result = {"mode": config.mode, "arch": arch, "resolution": config.resolution,
              "epochs": epochs, "images": len(index), "classes": len(classes),
              "final_loss": final.get("loss"), "final_accuracy": final.get("accuracy"),
              "backbone": str(run.file(BACKBONE_FILE))}
    cost_state = run.write_cost(cost, status="done", **info)
    run.write_result(result)
    barrier(ctx)  # no rank leaves before rank 0 has written the results
    return RunResult(run.path, result, cost_state)


def make_scheduler(optimizer: torch.optim.Optimizer, mode: str, epochs: int, step_epochs: int,
                   gamma: float) -> torch.optim.lr_scheduler.LRScheduler:
    """Supervised: x``gamma`` every ``step_epochs``; MoCo-v2: cosine over the epochs."""
    if mode == "moco":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda e: 0.5 * (1.0 + math.cos(math.pi * e / max(epochs, 1))))
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_epochs, gamma=gamma)


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


def supervised_labels(index: ImageIndex) -> tuple[list[str], np.ndarray]:
    """Classes present in the subset (``pool/label`` when it spans pools) and label ids."""
    unlabelled = next((p for p, label in zip(index.paths, index.labels, strict=True)
                       if not label), None)
    if unlabelled is not None:
        raise CondPretrainError(
            f"--mode supervised needs labelled pool images, but {unlabelled} has no label "
            "(use an ImageFolder or a CSV with labels, or --mode moco)")
    several = len(set(index.pools)) > 1
    keys = [f"{pool}/{label}" if several else label
            for pool, label in zip(index.pools, index.labels, strict=True)]
    classes = sorted(set(keys))
    lookup = {name: i for i, name in enumerate(classes)}
    return classes, np.array([lookup[k] for k in keys], dtype=np.int64)


def _key(path: str) -> str:
    return os.path.normcase(os.path.abspath(path))
