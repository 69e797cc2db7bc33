"""What a downstream task is, and the run every one of them shares.

A task (``detect``, ``segment``) is a class registered in ``DOWNSTREAM_TASKS``: it
reads its splits, builds its model and parameter groups, names its lr schedule (a
LambdaLR stepped per iteration), turns a batch into a loss and scores the trained model
on the test split. :meth:`DownstreamTask.run` does the rest on the one training loop
(``train.loop``): torchrun's group, the run folder (config.yaml, metrics.jsonl, run.json,
checkpoint.pt, model_final.pt, result.json), seeding, the resumable sampler, AMP,
checkpoints and resume.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import torch
from torch import nn
from torch.utils.data import Dataset, default_collate
from torch.utils.flop_counter import FlopCounterMode

from condpretrain import runlock
from condpretrain.config import to_dict
from condpretrain.device import autocast, device_kind, prepare_model, seed_everything
from condpretrain.dist import DistContext, distributed, gather, unwrap, wrap_ddp
from condpretrain.errors import CondPretrainError
from condpretrain.log import get_logger
from condpretrain.models import save_state_dict
from condpretrain.registry import DOWNSTREAM_TASKS, LAST
from condpretrain.train.batchnorm import precise_batchnorm
from condpretrain.train.common import open_run
from condpretrain.train.data import EpochLoader, SeededDataset
from condpretrain.train.loop import Recorder, Schedule, Trainer, TrainTask, restore
from condpretrain.train.run import CostMeter, RunDir

log = get_logger(__name__)

# The trained model as tested (precise BN statistics included): a plain state_dict.
FINAL_MODEL_FILE = "model_final.pt"

Item = TypeVar("Item")


class DownstreamTask(Generic[Item]):
    """One downstream benchmark on a VOC-style folder; an instance is one run of it."""

    name: ClassVar[str] = ""  # the command, e.g. "detect"
    label: ClassVar[str] = ""  # how reports show it
    order: ClassVar[int] = LAST
    task: ClassVar[str] = ""  # result.json's "task", e.g. "detection"
    metrics: ClassVar[tuple[str, ...]] = ()  # the headline scores in result.json
    # Their unit in result.json; an experiment's results.csv holds every score in percent.
    metrics_percent: ClassVar[bool] = True
    model_name: ClassVar[str] = "the model"
    config_class: ClassVar[type]  # the options of its command (flags generated from it)
    summary: ClassVar[str] = ""  # the command's one-line help
    description: ClassVar[str] = ""
    # cuDNN autotuning pays when input shapes repeat (not with detection's image sizes).
    cudnn_benchmark: ClassVar[bool] = True
    voc_example: ClassVar[str] = "VOCdevkit/VOC2007"  # shown in --voc's help
    # How many VOC folders it takes: 1, or None for one or more (--voc repeated).
    voc_folders: ClassVar[int | None] = 1
    # Options a resumed, unfinished run may change: its length (the lr schedule follows).
    extendable: ClassVar[tuple[str, ...]] = ("epochs", "iterations")
    sync_bn: bool = True  # pool BN statistics over the processes (few images per GPU)
    collate: Callable[[list], Any] | None = None

    def __init__(self, voc: str | Path | Sequence[str | Path], config: Any) -> None:
        self.vocs = voc_list(voc, self.voc_folders, self.name)
        self.voc = self.vocs[0]  # the folder of a one-folder task; the test folder
        self.config = config

    # -- what each task defines -----------------------------------------------------------
    def load(self, split: str) -> list[Item]:
        raise NotImplementedError

    def train_items(self) -> list[Item]:
        """The training images (``train_split`` of ``voc``; a task taking several folders
        says how it combines them)."""
        return self.load(self.config.train_split)

    def test_items(self) -> list[Item]:
        return self.load(self.config.test_split)

    def build(self) -> nn.Module:
        """The model, its backbone from ``config.init`` when given."""
        raise NotImplementedError

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """SGD's parameter groups; a group's own ``lr`` / ``weight_decay`` win."""
        raise NotImplementedError

    def train_dataset(self, items: list[Item]) -> Dataset:
        raise NotImplementedError

    def schedule(self, train_images: int) -> Schedule:
        """Iterations, metrics lines and epoch length (iteration-based)."""
        raise NotImplementedError

    def lr_factor(self, iterations: int) -> Callable[[int], float]:
        """The lr multiplier at each iteration (a LambdaLR's lambda)."""
        raise NotImplementedError

    def training_task(self, model: nn.Module, device: torch.device) -> TrainTask:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, items: list[Item], ctx: DistContext,
                 device: torch.device) -> dict[str, Any] | None:
        """Scores on the test split, on rank 0 (None on the others)."""
        raise NotImplementedError

    def result_fields(self, schedule: Schedule) -> dict[str, Any]:
        """The schedule as result.json reports it."""
        return {"iterations": schedule.iterations}

    def batch_groups(self, items: list[Item]) -> Sequence[int] | None:
        """A group id per training item when batches should hold one group each (e.g.
        landscape / portrait images, to pad less); None: batches of any items."""
        return None

    def precise_bn_iterations(self) -> int:
        """Training batches over which the BatchNorm statistics are recomputed with the
        final weights before testing (Detectron2's ``TEST.PRECISE_BN``); 0: none."""
        return 0

    # -- the run ------------------------------------------------------------------------------
    def run(self, out: str | Path, resume: bool = False) -> dict[str, Any]:
        """Train on ``train_split``, score on ``test_split``; the result, on every process.
        Resuming a finished run returns its stored result instead."""
        self.config.validate()
        with distributed(self.config.device, self.config.deterministic,
                         self.cudnn_benchmark) as (ctx, device), runlock.hold(out, ctx):
            run = RunDir(out, ctx.rank)
            done = open_run(run, self.config, {"voc": self._voc_input()}, resume,
                            extendable=self.extendable)
            return done.result if done is not None else self._run(run, resume, ctx, device)

    def _run(self, run: RunDir, resume: bool, ctx: DistContext,
             device: torch.device) -> dict[str, Any]:
        config = self.config
        batch = per_process_batch(config.batch_size, ctx)
        seed_everything(config.seed + ctx.rank)
        train_items, test_items = self.train_items(), self.test_items()
        if not train_items:
            raise CondPretrainError(f"--voc: the {config.train_split} split lists no images")
        if not config.init:
            log.warning("no --init: %s starts from a random backbone", self.model_name)
        model = prepare_model(self.build(), device)
        schedule = self.schedule(len(train_items))
        trainer = self._trainer(model, schedule, ctx, device)
        resumed = restore(run, trainer, resume)
        dataset = SeededDataset(self.train_dataset(train_items), config.seed)
        cost = CostMeter.start(resumed.cost, device_kind=device_kind(device),
                               device_count=ctx.world_size,
                               flops_per_image=self._training_flops(model, dataset, batch, device))
        voc = self._voc_input()
        run.save_config({"command": self.name, "voc": voc, "inputs": {"voc": voc},
                         "config": to_dict(config), "train_images": len(train_items),
                         "test_images": len(test_items)})

        loader = EpochLoader(dataset, batch_size=batch, workers=config.workers,
                             seed=config.seed, rank=ctx.rank, world=ctx.world_size, shuffle=True,
                             drop_last=True, pin=device.type == "cuda", collate=self.collate,
                             fill=True, groups=self.batch_groups(train_items))

        trainer.run(loader, schedule, position=resumed.position,
                    recorder=Recorder(run, cost, 3.0,
                                      checkpoint_seconds=config.checkpoint_minutes * 60))
        precise = self._precise_bn(trainer.task.model, loader, schedule, ctx, device)
        cost.add_flops(precise * config.batch_size, 1.0)
        if ctx.is_main:  # the model the test scores, as Detectron2's model_final.pth
            save_state_dict(unwrap(trainer.task.model), run.file(FINAL_MODEL_FILE))
        scores = self.evaluate(trainer.task.model, test_items, ctx, device)
        result: dict[str, Any] = {}
        if ctx.is_main and scores is not None:
            result = {"task": self.task, **scores, "arch": config.arch, "init": config.init,
                      **self.result_fields(schedule), "train_split": config.train_split,
                      "test_split": config.test_split, "train_images": len(train_items),
                      "test_images": len(test_items), "precise_bn_iterations": precise,
                      "cost": cost.state()}
            log.info("%s: %s", self.name, " ".join(f"{k} {result[k]:.4g}" for k in self.metrics))
        run.write_cost(cost, status="done", iteration=schedule.iterations)
        run.write_result(result)
        return gather(result, ctx)[0]  # rank 0's result for every process

    def _precise_bn(self, model: nn.Module, loader: EpochLoader, schedule: Schedule,
                    ctx: DistContext, device: torch.device) -> int:
        """:meth:`precise_bn_iterations` training steps' forwards (no gradients) through the
        trained model, whose BN statistics become their average: the batches of the epochs
        after the last trained one, their sampling drawn from the run's seed, so a resumed
        run recomputes the same statistics. The number of batches forwarded."""
        iterations = self.precise_bn_iterations()
        if not iterations:
            return 0
        net = unwrap(model)  # SyncBN still pools over the processes; DDP's hooks stay out
        step = self.training_task(net, device)
        amp = self.config.amp

        def forward(batch: Any) -> None:
            with autocast(device, amp):
                step.training_step(batch, device)

        first_epoch = math.ceil((schedule.iterations or 0) / max(len(loader(0)), 1))
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # RPN / RoI sampling draws from it
            torch.manual_seed(self.config.seed + ctx.rank)
            count = precise_batchnorm(net, epoch_batches(loader, first_epoch, iterations),
                                      forward)
        if count:
            log.info("%s: BatchNorm statistics recomputed over %d training batches",
                     self.name, count)
        return count

    def _voc_input(self) -> str | list[str]:
        return [str(v) for v in self.vocs] if len(self.vocs) > 1 else str(self.voc)

    def _trainer(self, model: nn.Module, schedule: Schedule, ctx: DistContext,
                 device: torch.device) -> Trainer:
        """SGD over the task's parameter groups, its lr factor stepped per iteration, on
        the model DDP-wrapped under torchrun."""
        config = self.config
        optimizer = torch.optim.SGD(self.param_groups(model), lr=config.lr,
                                    momentum=config.momentum, weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, self.lr_factor(schedule.iterations or 0))
        trained = wrap_ddp(model, device, ctx, sync_bn=self.sync_bn)
        return Trainer(self.training_task(trained, device), optimizer, scheduler, device,
                       config.amp, desc=self.name, dist_ctx=ctx)

    def _training_flops(self, model: nn.Module, dataset: Dataset, batch: int,
                        device: torch.device) -> int:
        """Forward FLOPs per training image, measured on one batch with a copy of the
        model (its BN statistics and everyone's RNG streams untouched)."""
        items = [dataset[i % len(dataset)] for i in range(batch)]  # type: ignore[arg-type]
        probe = self.training_task(copy.deepcopy(unwrap(model)).train(), device)
        counter = FlopCounterMode(display=False)
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), counter, torch.no_grad():
            probe.training_step((self.collate or default_collate)(items), device)
        return int(counter.get_total_flops()) // max(batch, 1)


def epoch_batches(loader: EpochLoader, epoch: int, count: int) -> Iterator[Any]:
    """``count`` batches of ``loader`` from the start of ``epoch`` on, into the next
    epochs as needed."""
    while count > 0:
        before = count
        for batch in loader(epoch):
            yield batch
            count -= 1
            if count == 0:
                return
        if count == before:  # an empty epoch: nothing more will come
            return
        epoch += 1


def run_task(name: str, voc: str | Path | Sequence[str | Path], out: str | Path, config: Any,
             resume: bool = False) -> dict[str, Any]:
    """What the command ``name`` (``detect``, ``segment``...) does: train and test the
    registered task on ``voc`` into the run folder ``out``; its result."""
    return DOWNSTREAM_TASKS.get_class(name)(voc, config).run(out, resume)


def voc_list(voc: str | Path | Sequence[str | Path], allowed: int | None,
             command: str) -> list[Path]:
    """``--voc`` as a list of folders, checked against how many the task takes."""
    folders = [Path(voc)] if isinstance(voc, (str, Path)) else [Path(v) for v in voc]
    if not folders:
        raise CondPretrainError("--voc: no VOC folder given")
    if allowed is not None and len(folders) != allowed:
        count = "one VOC folder" if allowed == 1 else f"{allowed} VOC folders"
        raise CondPretrainError(f"--voc: {command or 'this task'} takes {count}, "
                                f"got {len(folders)}")
    seen = [str(f.resolve()) for f in folders]
    for i, name in enumerate(seen):
        if name in seen[:i]:  # its images would count twice
            raise CondPretrainError(f"--voc: {folders[i]} is given twice")
    return folders


def per_process_batch(batch_size: int, ctx: DistContext) -> int:
    if batch_size % ctx.world_size:
        raise CondPretrainError(f"--batch-size {batch_size} is the total over all processes and "
                                f"must divide by the {ctx.world_size} processes")
    return batch_size // ctx.world_size


__all__ = ["DOWNSTREAM_TASKS", "DownstreamTask", "per_process_batch", "run_task", "voc_list"]
