"""Distributed (DDP) plumbing: torchrun's environment in, a small context out.

The single-process path needs nothing: without ``WORLD_SIZE`` > 1 every helper here is
a no-op. Under ``torchrun`` the process group is initialised from ``RANK`` /
``WORLD_SIZE`` / ``LOCAL_RANK`` (NCCL on GPUs, gloo on CPU) and only rank 0 writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from condpretrain.device import resolve_device
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


def init_distributed(device_name: str = "auto") -> tuple[DistContext, torch.device]:
    """Join torchrun's process group when launched by it; choose this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(), resolve_device(device_name)
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local % max(torch.cuda.device_count(), 1))
        torch.cuda.set_device(device)
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
    if not ctx.enabled:
        return [mine]
    gathered: list[float] = [0.0] * ctx.world_size
    dist.all_gather_object(gathered, mine)
    return gathered
