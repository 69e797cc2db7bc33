"""Where computation runs: device choice, AMP and memory layout, GPU first."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from condpretrain.errors import CondPretrainError


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


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    batch = batch.to(device, non_blocking=True)
    if device.type == "cuda" and batch.dim() == 4:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def device_kind(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"
