"""Options that several commands share, declared once and placed in each command's config.

Each is a function rather than a base dataclass so every config keeps its own field
order (the order of ``config.yaml`` and ``selection.json``).
"""

from __future__ import annotations

from typing import Any

from condpretrain.config.options import option

PILLOW_PIXEL_LIMIT = 178_956_970  # Pillow's own decompression-bomb limit


def workers() -> Any:
    return option(8, "DataLoader workers", low=0, neutral=True)


def device() -> Any:
    return option("auto", "auto, cpu, cuda, cuda:1 ...", neutral=True)


def amp(neutral: bool = False) -> Any:
    """``neutral`` where precision cannot change the result that is kept (scores are
    recomputed the same way; a resumed training run must keep its precision)."""
    return option(True, "mixed precision on GPU (bf16 where supported)", neutral=neutral)


def seed(grid: bool = False, what: str = "random seed") -> Any:
    return option(0, what, grid=grid)


def checkpoint_minutes() -> Any:
    return option(10.0, "minutes between checkpoints, mid-epoch or at an epoch end (0: every "
                  "step); the end of the run is always saved", low=0, neutral=True)


def max_image_pixels() -> Any:
    return option(PILLOW_PIXEL_LIMIT, "skip larger images as decompression bombs", low=1)


def compile_model() -> Any:
    return option(False, "torch.compile the training model (inductor; the first steps wait a "
                  "minute or two while it compiles); off by default until measured on a GPU",
                  neutral=True)


def deterministic() -> Any:
    return option(False, "the same seed gives the same numbers on a GPU too: deterministic "
                  "cuDNN/cuBLAS kernels and no cuDNN autotuning (slower)")


def crop_scale() -> Any:
    return option(0.08, "smallest random-resized crop, as a share of the image's area (the "
                  "supervised recipes; MoCo keeps its own 0.2)", low=0, high=1, low_open=True)


def flip() -> Any:
    return option(True, "random horizontal flips in the supervised recipes (--no-flip for "
                  "text and digits, which a mirror changes)")


def parse_fractions(value: Any) -> Any:
    """Budgets as fractions of the pool: 0.06 or '6%', as a list, one value or 'a, b'."""
    if isinstance(value, str):
        value = value.replace(",", " ").split() or [value]
    if not isinstance(value, (list, tuple)):
        return value  # one number: the option's list type wraps it
    return [_percent(item) for item in value]


def _percent(value: Any) -> Any:
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100
        except ValueError:
            pass  # left as it is, for the check to refuse naming the option
    return value
