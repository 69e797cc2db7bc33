"""Distributed (DDP) plumbing that every layer may use: torchrun's environment in, a small
context out, and the few collectives the tool needs.

The single-process path needs nothing: without ``WORLD_SIZE`` > 1 every helper here is
a no-op. Under ``torchrun`` the process group is initialised from ``RANK`` /
``WORLD_SIZE`` / ``LOCAL_RANK`` (NCCL on GPUs, gloo on CPU) and only rank 0 writes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from condpretrain.device import configure_determinism, resolve_device
from condpretrain.errors import CondPretrainError


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # we initialised the group, so we tear it down

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_main_process() -> bool:
    """Rank 0 of torchrun, or the only process (works before and after the group exists)."""
    return int(os.environ.get("RANK", "0")) == 0


def init_distributed(device_name: str = "auto", deterministic: bool = False,
                     benchmark: bool = True) -> tuple[DistContext, torch.device]:
    """Join torchrun's process group when launched by it; choose this process's device and
    how it picks kernels (``configure_determinism``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        device = resolve_device(device_name)
        configure_determinism(deterministic, device, benchmark)
        return DistContext(), device
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local % max(torch.cuda.device_count(), 1))
        torch.cuda.set_device(device)
    configure_determinism(deterministic, device, benchmark)
    owns = False
    if not dist.is_initialized():
        try:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        except (RuntimeError, ValueError) as exc:
            raise CondPretrainError(f"torchrun: cannot join the process group ({exc})"
                                    .splitlines()[0]) from None
        owns = True
    return DistContext(rank, world, local, owns), device


def shutdown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def distributed(device_name: str = "auto", deterministic: bool = False,
                benchmark: bool = True) -> Iterator[tuple[DistContext, torch.device]]:
    """``init_distributed`` for the length of a block; the group (if this call made it)
    is torn down after the block's last collective, also when it raises."""
    ctx, device = init_distributed(device_name, deterministic, benchmark)
    try:
        yield ctx, device
    finally:
        shutdown(ctx)


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def all_reduce_sum(values: list[float], device: torch.device, ctx: DistContext) -> list[float]:
    """Sum a few numbers over all ranks (float64, so image counts stay exact)."""
    if not ctx.enabled:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def broadcast_flag(flag: bool, device: torch.device, ctx: DistContext) -> bool:
    """Rank 0's decision for everyone (e.g. 'checkpoint now', which is time based)."""
    if not ctx.enabled:
        return flag
    tensor = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.broadcast(tensor, 0)
    return bool(tensor.item())


def gather(obj: Any, ctx: DistContext) -> list[Any]:
    """Every process's ``obj`` (any picklable object), in rank order; ``[obj]`` alone."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


@torch.no_grad()
def concat_all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """All ranks' tensors concatenated on dim 0 (no gradient), as MoCo's builder does."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor.contiguous())
    return torch.cat(gathered, dim=0)


def gather_peak_rss_mb(ctx: DistContext) -> list[float]:
    """Each rank's peak resident memory so far, in MB (rank order)."""
    import resource

    mine = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return [float(x) for x in gather(mine, ctx)]


def wrap_ddp(model: nn.Module, device: torch.device, ctx: DistContext,
             sync_bn: bool = False) -> nn.Module:
    """``model`` in DDP under torchrun (itself otherwise). ``sync_bn``: pool batch-norm
    statistics over all processes, for tasks with a few images per GPU (CUDA only:
    SyncBatchNorm refuses CPU modules, so CPU processes keep their own statistics)."""
    if not ctx.enabled:
        return model
    if sync_bn and device.type == "cuda":
        # New modules holding the same parameters: an optimizer built before still fits.
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The model itself, inside torch.compile's wrapper (``--compile``, whose state_dict
    keys carry an ``_orig_mod.`` prefix) and DDP's (``module.``)."""
    model = getattr(model, "_orig_mod", model)
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


__all__ = ["DistContext", "is_main_process", "init_distributed", "shutdown", "distributed",
           "barrier", "all_reduce_sum", "broadcast_flag", "gather", "concat_all_gather",
           "gather_peak_rss_mb", "wrap_ddp", "unwrap"]
