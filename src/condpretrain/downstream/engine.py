"""An iteration-based training loop for the downstream tasks, and torchrun helpers.

Detection is specified in iterations (warm-up, then steps at 18k/22k) and PSANet's poly
schedule changes the learning rate every iteration, while ``train.loop.Trainer`` steps
its scheduler once per epoch; so the downstream tasks share this small loop instead.
It keeps the Trainer's conventions: AMP on CUDA (bf16 where supported, fp16 with loss
scaling otherwise), progress bar, per-period metrics lines, and the common run folder
(``train.run.RunDir``: config, metrics.jsonl, run.json cost, atomic checkpoints).
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from condpretrain.config import DetectConfig, SegmentConfig
from condpretrain.device import autocast, device_kind, prepare_model, seed_everything
from condpretrain.errors import CondPretrainError
from condpretrain.log import get_logger, progress_bar
from condpretrain.train.common import unwrap, wrap_ddp
from condpretrain.train.dist import DistContext, init_distributed, shutdown
from condpretrain.train.run import CostMeter, RunDir

log = get_logger(__name__)

Item = TypeVar("Item")

# step(model, batch) -> (loss, loss parts for the log, images in this process's batch)
StepFn = Callable[[nn.Module, Any], tuple[torch.Tensor, dict[str, torch.Tensor], int]]


@dataclass
class OpenRun(Generic[Item]):
    """A downstream run ready to train (see ``run_downstream``)."""

    ctx: DistContext
    device: torch.device
    run: RunDir
    train_items: list[Item]
    test_items: list[Item]
    model: nn.Module  # on ``device``, not yet wrapped for DDP
    optimizer: torch.optim.Optimizer
    start: int  # the checkpoint's iteration, 0 for a fresh run
    scaler_state: dict[str, Any] | None
    cost_state: dict[str, Any] | None

    def train(self, dataset: Dataset, config: DetectConfig | SegmentConfig, *, sync_bn: bool,
              step: StepFn, lr_at: Callable[[int], float], iterations: int,
              iterations_per_epoch: float, log_every: int, record: dict[str, Any], desc: str,
              collate: Callable | None = None) -> tuple[nn.Module, CostMeter]:
        """Train on ``dataset`` from ``start`` to ``iterations``, saving ``record`` as the
        run's config; the trained model (DDP-wrapped under torchrun) and its cost."""
        trained = wrap_for_training(self.model, self.ctx, self.device, sync_bn)
        local_batch = per_process_batch(config.batch_size, self.ctx)
        loader = train_loader(dataset, local_batch, config.workers, self.ctx, config.seed,
                              collate)
        batches = batches_forever(loader, start_epoch=int(self.start / iterations_per_epoch))
        # FLOPs are measured on the first batch, which then still trains.
        first = next(batches)
        cost = CostMeter.start(
            self.cost_state, device_kind=device_kind(self.device),
            device_count=self.ctx.world_size,
            flops_per_image=training_flops(self.model, step, first, local_batch))
        self.run.save_config(record)
        train_iterations(
            model=trained, optimizer=self.optimizer, lr_at=lr_at,
            batches=itertools.chain([first], batches), step=step, iterations=iterations,
            start_iteration=self.start, device=self.device, amp=config.amp, run=self.run,
            cost=cost, ctx=self.ctx, iterations_per_epoch=iterations_per_epoch,
            log_every=log_every, checkpoint_minutes=config.checkpoint_minutes,
            scaler_state=self.scaler_state, desc=desc)
        return trained, cost

    def finish(self, result: dict[str, Any], cost: CostMeter, iterations: int) -> dict[str, Any]:
        """Record ``result`` (rank 0's; {} elsewhere) and hand it to every process."""
        self.run.write_cost(cost, status="done", iteration=iterations)
        self.run.write_result(result)
        return gather(result, self.ctx)[0]


def run_downstream(
    out: str | Path,
    config: DetectConfig | SegmentConfig,
    resume: bool,
    train: Callable[[OpenRun[Item]], dict[str, Any]],
    *,
    load: Callable[[str], list[Item]],
    build: Callable[[], nn.Module],
    param_groups: Callable[[nn.Module], list[dict[str, Any]]],
    model_name: str,
) -> dict[str, Any]:
    """What detection and segmentation share around their training: join torchrun's
    group, prepare the run folder, seed, load the ``train_split`` / ``test_split`` items
    with ``load``, build the model, make its SGD over ``param_groups``, restore the
    checkpoint when resuming, then ``train`` (which trains, evaluates and returns the
    result). Resuming a finished run returns its stored result instead. The run folder
    ``out`` gets config.yaml, metrics.jsonl, run.json, checkpoint.pt and result.json."""
    ctx, device = init_distributed(config.device)
    try:
        run = RunDir(out, ctx.rank)
        if resume and run.finished():
            log.info("%s is finished; its result stands", run.path)
            return run.read_result() or {}
        run.prepare(resume)
        seed_everything(config.seed + ctx.rank)
        train_items, test_items = load(config.train_split), load(config.test_split)
        if not config.init:
            log.warning("no --init: %s starts from a random backbone", model_name)
        model = prepare_model(build(), device)
        # A group's own weight_decay (detection's norm layers: 0) wins over this default.
        optimizer = torch.optim.SGD(param_groups(model), lr=config.lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay)
        start, scaler_state, cost_state = (restore_state(run, model, optimizer)
                                           if resume else (0, None, None))
        return train(OpenRun(ctx, device, run, train_items, test_items, model, optimizer,
                             start, scaler_state, cost_state))
    finally:
        # Only a group this call created; after train's last collective (the result's gather).
        shutdown(ctx)


def per_process_batch(batch_size: int, ctx: DistContext) -> int:
    if batch_size % ctx.world_size:
        raise CondPretrainError(f"--batch-size {batch_size} is the total over all processes and "
                                f"must divide by the {ctx.world_size} processes")
    return batch_size // ctx.world_size


def train_loader(dataset: Dataset, batch_size: int, workers: int, ctx: DistContext,
                 seed: int, collate: Callable | None = None) -> DataLoader:
    sampler = (DistributedSampler(dataset, ctx.world_size, ctx.rank, shuffle=True, seed=seed)
               if ctx.world_size > 1 else RandomSampler(dataset))
    if len(dataset) < batch_size:  # tiny datasets still make full batches
        sampler = RandomSampler(dataset, replacement=True, num_samples=batch_size)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      collate_fn=collate, drop_last=True, pin_memory=torch.cuda.is_available(),
                      persistent_workers=workers > 0)


def batches_forever(loader: DataLoader, start_epoch: int = 0) -> Iterator[Any]:
    epoch = start_epoch
    while True:
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def wrap_for_training(model: nn.Module, ctx: DistContext, device: torch.device,
                      sync_bn: bool) -> nn.Module:
    # 2 images per GPU: BN statistics must be pooled over all processes.
    if ctx.enabled and sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return wrap_ddp(model, device, ctx)


def gather(obj: Any, ctx: DistContext) -> list[Any]:
    """Every process's ``obj``, in rank order (a one-element list without torchrun)."""
    # train.dist only gathers numbers (all_reduce_sum) or its own RSS figure; the
    # downstream tasks need arbitrary objects (detections, a result dict).
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call, by torch's FlopCounterMode (x2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn()
    return int(counter.get_total_flops())


def training_flops(model: nn.Module, step: StepFn, batch: Any, images: int) -> int:
    """Forward FLOPs per training image, measured on a copy (BN statistics untouched)."""
    probe = copy.deepcopy(unwrap(model)).train()
    return count_flops(lambda: step(probe, batch)) // max(images, 1)


def train_iterations(
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    lr_at: Callable[[int], float],
    batches: Iterable[Any],
    step: StepFn,
    iterations: int,
    start_iteration: int,
    device: torch.device,
    amp: bool,
    run: RunDir,
    cost: CostMeter,
    ctx: DistContext,
    iterations_per_epoch: float,
    log_every: int,
    checkpoint_minutes: float,
    scaler_state: dict[str, Any] | None = None,
    desc: str = "train",
) -> None:
    """Train from ``start_iteration`` to ``iterations``; the lr of each param group is
    ``lr_at(i) * group['lr_mult']``. Checkpoints every ``checkpoint_minutes`` and at the end."""
    use_scaler = amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    if scaler_state:
        scaler.load_state_dict(scaler_state)
    model.train()
    iterator = iter(batches)
    # Losses are summed as device tensors and read once per period: reading them every
    # iteration would wait for the GPU each time.
    last_save, period_n = time.monotonic(), 0
    period_loss: torch.Tensor | float = 0.0
    period_parts: dict[str, torch.Tensor] = {}
    period_start = time.perf_counter()
    it = start_iteration
    with progress_bar(iterations, desc=desc, unit="it", initial=start_iteration) as bar:
        while it < iterations:
            batch = next(iterator)
            lr = lr_at(it)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_mult", 1.0)
            with autocast(device, amp):
                loss, parts, images = step(model, batch)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            it += 1
            cost.add_images(images * ctx.world_size, flop_factor=3.0)
            period_loss = period_loss + loss.detach().float()
            period_n += 1
            for key, value in parts.items():
                period_parts[key] = period_parts.get(key, 0.0) + value.detach().float()
            bar.update(1)
            if it % log_every == 0 or it == iterations:
                mean_loss = float(period_loss) / period_n
                if not math.isfinite(mean_loss):
                    raise CondPretrainError(f"the loss became {mean_loss} by iteration {it}; "
                                            "try a lower --lr")
                seconds = time.perf_counter() - period_start
                row = {"epoch": round(it / iterations_per_epoch, 4), "iteration": it,
                       "loss": mean_loss, "lr": lr,
                       **{k: float(v) / period_n for k, v in period_parts.items()},
                       "seconds": round(seconds, 3),
                       "iterations_per_s": round(period_n / max(seconds, 1e-9), 3)}
                run.append_metrics(row)
                bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{lr:.3g}")
                log.info("%s iteration %d/%d loss %.4f lr %.3g", desc, it, iterations,
                         mean_loss, lr)
                period_loss, period_parts, period_n = 0.0, {}, 0
                period_start = time.perf_counter()
            due = time.monotonic() - last_save > checkpoint_minutes * 60
            if due or it == iterations:
                save_state(run, model, optimizer, scaler, it, cost)
                last_save = time.monotonic()


def save_state(run: RunDir, model: nn.Module, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, iteration: int, cost: CostMeter) -> None:
    run.save_checkpoint({"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                         "scaler": scaler.state_dict(), "iteration": iteration,
                         "cost": cost.state()})
    run.write_cost(cost, status="running", iteration=iteration)


def restore_state(run: RunDir, model: nn.Module,
                  optimizer: torch.optim.Optimizer) -> tuple[int, dict | None, dict | None]:
    """(iteration, scaler state, cost state) of the run's checkpoint; (0, None, None) if none."""
    state = run.load_checkpoint()
    if state is None:
        return 0, None, None
    unwrap(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    log.info("resuming %s at iteration %d", run.path, state["iteration"])
    return int(state["iteration"]), state.get("scaler"), state.get("cost")


def warmup_multistep(base_lr: float, steps: Iterable[int], gamma: float, warmup: int,
                     warmup_factor: float) -> Callable[[int], float]:
    """Detectron2's WarmupMultiStepLR: linear warm-up from ``warmup_factor`` x lr."""
    steps = sorted(steps)

    def lr_at(i: int) -> float:
        factor = gamma ** sum(1 for s in steps if i >= s)
        if i < warmup:
            alpha = i / warmup
            factor *= warmup_factor * (1 - alpha) + alpha
        return base_lr * factor

    return lr_at


def poly(base_lr: float, total: int, power: float) -> Callable[[int], float]:
    """PSANet's poly schedule: lr x (1 - i / total) ^ power, per iteration."""
    return lambda i: base_lr * math.pow(max(1.0 - i / total, 0.0), power)
