"""Fine-tune a backbone on the target: a new linear head, the whole network trained.

Top-1 (and top-5 with more than 5 classes) on the target's test split after every epoch.
The headline figures (``top1`` / ``top5`` in ``result.json``) are the LAST epoch's, as in
the paper: no choice is made on the test split. The epoch best on the test split is kept
too, named for what it is (``model_best_on_test.pt``, ``best_test_top1`` /
``best_test_epoch``): an optimistic, test-selected figure for curiosity, not a result.
``model_last.pt`` / ``model_best_on_test.pt`` are plain torchvision state_dicts with the
head. Without ``--init`` this is the random-initialisation baseline.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from condpretrain import atomic, runlock
from condpretrain.config import FinetuneConfig, to_dict
from condpretrain.data.sources import open_target
from condpretrain.device import compile_model, device_kind, prepare_model, seed_everything
from condpretrain.dist import DistContext, all_reduce_sum, distributed, unwrap, wrap_ddp
from condpretrain.errors import CondPretrainError
from condpretrain.log import get_logger
from condpretrain.models import (
    build_resnet,
    flops_per_image,
    load_backbone,
    save_backbone,
    save_state_dict,
)
from condpretrain.train import common
from condpretrain.train.common import RunResult
from condpretrain.train.data import (
    AugmentedDataset,
    EpochLoader,
    eval_crop,
    supervised_augment,
)
from condpretrain.train.loop import Best, Metrics, Recorder, Schedule, Trainer, restore
from condpretrain.train.methods import PRETRAIN_METHODS
from condpretrain.train.run import BACKBONE_FILE, CostMeter, RunDir
from condpretrain.train.supervised import SupervisedTask, evaluate

log = get_logger(__name__)

BEST_FILE, LAST_FILE = "model_best_on_test.pt", "model_last.pt"
# The old name of BEST_FILE, kept as a hard link to it for scripts that read it.
OLD_BEST_FILE = "model_best.pt"
EPOCHS = 90  # without a method's recipe (random init, supervised backbones)


def resolve(config: FinetuneConfig) -> tuple[FinetuneConfig, str]:
    """Concrete epochs and lr, and the backbone kind: the pre-training method that made
    ``--init`` (``--backbone``, or with ``auto`` the mode in the run.json beside it;
    'supervised' when unknown), or 'random' without ``--init``. A registered method's
    fine-tuning recipe fills what the config leaves unset."""
    kind = config.backbone
    if kind == "auto":
        kind = (common.backbone_mode(config.init) or "supervised") if config.init else "random"
    method = PRETRAIN_METHODS.get(kind)  # None for 'random' (or a method not loaded here)
    recipe_epochs = getattr(method, "finetune_epochs", None)
    recipe_lr = getattr(method, "finetune_lr", None)
    epochs = _first(config.epochs, recipe_epochs, EPOCHS)
    lr = _first(config.lr, recipe_lr, config.resolved_lr())
    return dataclasses.replace(config, epochs=epochs, lr=lr), kind


def _first(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def finetune(
    target: str,
    out: str | Path,
    config: FinetuneConfig | None = None,
    resume: bool = False,
) -> RunResult:
    """Fine-tune ``config.init`` (None: random init) on ``target``; evaluate on its test split."""
    config = config or FinetuneConfig()
    config.validate()
    with distributed(config.device, config.deterministic) as (ctx, device), \
            runlock.hold(out, ctx):
        return _finetune(target, Path(out), config, resume, ctx, device)


def _finetune(target_spec: str, out: Path, config: FinetuneConfig, resume: bool,
              ctx: DistContext, device: torch.device) -> RunResult:
    run = RunDir(out, ctx.rank)
    config, kind = resolve(config)
    target = open_target(target_spec)
    if not target.labelled:
        raise CondPretrainError(f"--target: {target_spec} needs labels (class folders or a "
                                "label column) to fine-tune on")
    classes = target.train.classes
    test = target.test
    images = [*target.train.paths, *(test.paths if test is not None else [])]
    image_labels = [*target.train.labels, *(test.labels if test is not None else [])]
    inputs = {"target": target_spec,
              common.IMAGES_KEY: common.images_fingerprint(images, image_labels)}
    done = common.open_run(run, config, inputs, resume)
    if done is not None:
        return done
    if test is None:
        log.warning("--target %s has no test/val split: no accuracy will be reported",
                    target_spec)
    run.save_config({"command": "finetune", "inputs": inputs, "config": to_dict(config),
                     "backbone_kind": kind, "classes": classes, "world_size": ctx.world_size})

    seed_everything(config.seed)
    model = build_resnet(config.arch, num_classes=len(classes))
    if config.init:
        load_backbone(model, config.init, config.arch)
        # a fresh head, drawn the same way whether or not weights were loaded
    model = prepare_model(model, device)

    def source(paths):
        return common.image_source(paths, config.resolution, cache=config.cache,
                                   cache_dir=config.cache_dir, run=run, workers=config.workers,
                                   max_pixels=config.max_image_pixels, ctx=ctx)

    augment = supervised_augment(config.resolution, config.crop_scale, config.flip)
    train_set = AugmentedDataset(source(target.train.paths), augment,
                                 target.train.label_ids(classes), seed=config.seed)
    test_set = None
    if test is not None:
        test_set = AugmentedDataset(source(test.paths), eval_crop(config.resolution),
                                    test.label_ids(classes), seed=config.seed)
    trainer = Trainer(SupervisedTask(compile_model(wrap_ddp(model, device, ctx), config.compile)),
                      *optimizer_for(model, config),
                      device, config.amp, desc="finetune", dist_ctx=ctx)
    resumed = restore(run, trainer, resume)
    info = {"command": "finetune", "arch": config.arch, "resolution": config.resolution,
            "backbone_kind": kind}
    cost = CostMeter.start(resumed.cost, device_kind=device_kind(device),
                           device_count=ctx.world_size,
                           flops_per_image=flops_per_image(config.arch, config.resolution))
    cost.add_cache(common.cache_seconds([train_set.source, getattr(test_set, "source", None)]))

    def save_best() -> None:
        if ctx.is_main:
            save_state_dict(unwrap(model), run.file(BEST_FILE))
            atomic.link_or_copy(run.file(BEST_FILE), run.file(OLD_BEST_FILE))

    best = Best("top1", save_best, resumed.best)
    topk = (1, 5) if len(classes) > 5 else (1,)

    loading = {"batch_size": config.batch_size, "workers": config.workers, "seed": config.seed,
               "rank": ctx.rank, "world": ctx.world_size, "drop_last": False,
               "pin": device.type == "cuda"}
    # One loader for every evaluation, its workers kept between them (a fine-tune evaluates
    # up to every epoch, and starting a dozen workers each time shows at 112 px).
    test_loader = (None if test_set is None
                   else EpochLoader(test_set, shuffle=False, **loading))

    def on_line(metrics: Metrics) -> dict[str, Any]:
        done = int(metrics.epoch) + 1  # epochs finished; the line's epoch counts from 0
        if test_loader is None or (done % config.eval_every and done != config.epochs):
            return {}
        scores = test_scores(model, test_loader(0), config.amp, topk, ctx, device)
        cost.add_flops(scores.pop("_seen", 0), 1.0)
        return scores

    loader = EpochLoader(train_set, shuffle=True, **loading)

    trainer.run(loader, Schedule.by_epochs(config.epochs), position=resumed.position,
                recorder=Recorder(run, cost, 3.0, info, config.checkpoint_minutes * 60,
                                  best=best, on_line=on_line))
    if ctx.is_main:
        save_state_dict(unwrap(model), run.file(LAST_FILE))
        save_backbone(model, run.file(BACKBONE_FILE))
    metrics = run.read_metrics()
    last = metrics[-1] if metrics else {}
    result = {"target": target_spec, "arch": config.arch, "init": config.init,
              "backbone_kind": kind, "classes": len(classes), "epochs": config.epochs,
              "lr": config.lr, "optimizer": config.optimizer,
              "top1": last.get("top1"), "top5": last.get("top5"),
              "best_test_top1": best.scores.get("top1"),
              "best_test_top5": best.scores.get("top5"),
              "best_test_epoch": best.scores.get("epoch"),
              "best_top1": best.scores.get("top1"),  # old name of best_test_top1
              "note": "top1/top5: the last epoch; best_test_*: the epoch best on the test "
                      "split itself (optimistic)",
              "test_images": len(test) if test else 0}
    return common.complete(run, cost, result, ctx, **info)


def optimizer_for(model: torch.nn.Module, config: FinetuneConfig
                  ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD (or Adam) and the step schedule: x``lr_gamma`` every ``lr_step_epochs``."""
    if config.optimizer == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay)
    return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, config.lr_step_epochs,
                                                      config.lr_gamma)


def test_scores(model, loader: Iterable[Any], amp: bool, topk, ctx, device: torch.device
                ) -> dict[str, Any]:
    """Top-k accuracy (in %) and loss on the test split (``loader``: this rank's share)."""
    hits, seen, loss_sum = evaluate(model, loader, device, amp, topk)
    totals = all_reduce_sum([seen, loss_sum, *(hits[k] for k in topk)], device, ctx)
    seen_all = max(totals[0], 1)
    scores: dict[str, Any] = {"test_loss": totals[1] / seen_all, "_seen": int(totals[0])}
    for k, value in zip(topk, totals[2:], strict=True):
        scores[f"top{k}"] = round(100.0 * value / seen_all, 4)
    scores["accuracy"] = scores["top1"]
    return scores
