"""Where computation runs: device choice, AMP and memory layout, GPU first."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import numpy as np
import torch

from condpretrain.errors import CondPretrainError

Tag = TypeVar("Tag")
Batch = TypeVar("Batch")


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CondPretrainError(f"--device: unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CondPretrainError(f"--device {name}: CUDA is not available on this machine")
    return device


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast on CUDA only: CPU autocast is slower than fp32 for convnets."""
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move to device; channels_last on CUDA, where cuDNN's NHWC kernels are faster."""
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def compile_model(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """``--compile``: the model behind torch.compile (inductor), wrapped after DDP as
    PyTorch recommends so DDP's bucketing still overlaps the all-reduce with the backward.
    The wrapper shares the model's parameters; ``dist.unwrap`` reaches the model inside."""
    return torch.compile(model) if enabled else model


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    batch = batch.to(device, non_blocking=True)
    if device.type == "cuda" and batch.dim() == 4:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


def kept_on_device(batch: torch.Tensor, keep: torch.Tensor, device: torch.device
                   ) -> torch.Tensor:
    """The samples of ``batch`` that the host mask ``keep`` marks, on ``device``. The
    whole batch is copied and the others dropped there: indexing on the host would copy
    the batch out of pinned memory (a host copy, and a transfer the host waits for).
    With every sample kept, the usual case, nothing is indexed."""
    batch = to_device(batch, device)
    if bool(keep.all()):
        return batch
    return batch[keep.to(device, non_blocking=True)]


def ahead_on_device(batches: Iterable[Batch], device: torch.device) -> Iterator[Batch]:
    """``batches`` with their tensors already on ``device``, each copied one batch ahead
    on a side CUDA stream (as timm's ``PrefetchLoader`` does): batch k+1 crosses to the GPU
    while the model computes batch k, where a copy on the compute stream would wait for
    step k and the step for it. Elsewhere the batches come as they are (the steps move
    them; on a CPU there is nothing to overlap)."""
    if device.type != "cuda":
        yield from batches
        return
    side, compute = torch.cuda.Stream(device), torch.cuda.current_stream(device)
    ready: list[Any] = []  # the batch whose copy was issued last, once there is one
    for batch in batches:
        with torch.cuda.stream(side):
            moved = tree_to(batch, device)
        if ready:
            yield ready.pop()
        compute.wait_stream(side)  # queued after step k: the host does not wait here
        # Made on the side stream, used on the compute stream: the allocator must not hand
        # their memory out again before the compute stream is done with them.
        for tensor in _tensors_in(moved):
            tensor.record_stream(compute)
        ready.append(moved)
    if ready:
        yield ready.pop()


def tree_to(batch: Any, device: torch.device) -> Any:
    """``batch`` (tensors in tuples, lists and dicts, any depth; anything else kept as
    it is) with its tensors on ``device`` (non-blocking), the containers rebuilt."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return type(batch)((k, tree_to(v, device)) for k, v in batch.items())
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a named tuple
        return type(batch)(*(tree_to(v, device) for v in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(tree_to(v, device) for v in batch)
    return batch


def _tensors_in(batch: Any) -> Iterator[torch.Tensor]:
    if isinstance(batch, torch.Tensor):
        yield batch
    elif isinstance(batch, dict):
        for value in batch.values():
            yield from _tensors_in(value)
    elif isinstance(batch, list | tuple):
        for value in batch:
            yield from _tensors_in(value)


def on_host_one_late(results: Iterable[tuple[Tag, torch.Tensor | None]]
                     ) -> Iterator[tuple[Tag, np.ndarray | None]]:
    """Each ``(tag, device tensor or None)`` of ``results`` as ``(tag, numpy array or
    None)``, in order, one step late: step k's copy to the host starts without waiting
    (into pinned memory) and is read only once step k+1's work has been queued. A loop that read each result
    at once (``.cpu()``) would leave the device idle while the host prepares the next
    batch (decoding it, on the scoring path) and the host idle while the device computes."""
    pending: tuple[Tag, torch.Tensor | None, torch.cuda.Event | None] | None = None
    for tag, values in results:
        started = (tag, *_start_host_copy(values))
        if pending is not None:
            yield _finish_host_copy(*pending)
        pending = started
    if pending is not None:
        yield _finish_host_copy(*pending)


def _start_host_copy(values: torch.Tensor | None
                     ) -> tuple[torch.Tensor | None, torch.cuda.Event | None]:
    if values is None or values.device.type != "cuda":
        return (None if values is None else values.detach().cpu()), None
    host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
    host.copy_(values.detach(), non_blocking=True)
    done = torch.cuda.Event()
    done.record()
    return host, done


def _finish_host_copy(tag: Tag, host: torch.Tensor | None, done: torch.cuda.Event | None
                      ) -> tuple[Tag, np.ndarray | None]:
    if done is not None:
        done.synchronize()
    return tag, (None if host is None else host.numpy())


def configure_determinism(deterministic: bool, device: torch.device, benchmark: bool = True
                          ) -> None:
    """``--deterministic``: the same seed gives the same numbers on a GPU too (cuDNN's
    deterministic kernels, no autotuning, torch's deterministic algorithms, cuBLAS's
    fixed workspace); slower. Otherwise cuDNN autotunes its convolutions on CUDA when
    ``benchmark`` (input shapes are fixed; detection's vary, so it passes False)."""
    if deterministic:
        # cuBLAS reads this when it creates its handle: set before the first matmul.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        # warn_only: an op without a deterministic kernel warns instead of failing a run.
        torch.use_deterministic_algorithms(True, warn_only=True)
        return
    torch.backends.cudnn.deterministic = False
    torch.backends.cudnn.benchmark = benchmark and device.type == "cuda"
    torch.use_deterministic_algorithms(False)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def device_kind(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"
