"""The Scorer interface, its registry, and the streamed pass over a pool.

A method is one small class: ``fit(target, pool)`` learns what the target looks like,
``score(images)`` returns one float32 per image, higher = more relevant, NaN for a file
that could not be read. ``score`` must depend on each image alone (not on which other
images share the call): the runner scores the pool in chunks, across processes and
across restarts. New methods plug in with ``@SCORERS.register`` (a class with a ``name``,
``summary``, report ``label`` and ``order``); nothing else in the tool names a method.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from condpretrain.data.device_decode import mapped_batches
from condpretrain.data.sources import ImageIndex, Target
from condpretrain.errors import CondPretrainError
from condpretrain.log import get_logger, progress_bar
from condpretrain.registry import LAST, SCORERS

if TYPE_CHECKING:  # the context module builds on this one (via the target model)
    from condpretrain.config import SelectConfig
    from condpretrain.scoring.context import ScoringContext

log = get_logger(__name__)


class Scorer(ABC):
    name: ClassVar[str]
    summary: ClassVar[str]
    label: ClassVar[str] = ""  # how reports show the method; the name when empty
    order: ClassVar[int] = LAST  # its row in reports: the paper's Table 2 order
    needs_target: ClassVar[bool] = True
    needs_target_labels: ClassVar[bool] = False
    # One of the paper's Table 2 methods: the default grid of an experiment and a plan.
    in_paper: ClassVar[bool] = True
    # In the default demo's grid; False: only in `condpretrain demo --full` (what keeps
    # the default demo within minutes on a CPU).
    in_short_demo: ClassVar[bool] = True

    def __init__(self, context: ScoringContext) -> None:
        self.context = context

    @classmethod
    def needs_labels(cls, config: SelectConfig) -> bool:
        """Whether the method, with these options, cannot score for an unlabelled target
        (a VOC folder): what an experiment checks before any cell runs."""
        return cls.needs_target_labels

    def check_target(self, target: Target | None) -> None:
        if target is None:
            if self.needs_target:
                raise CondPretrainError(f"--target: method {self.name!r} needs a target dataset")
            return
        if self.needs_target_labels and not target.labelled:
            raise CondPretrainError(
                f"method {self.name!r} needs a labelled target (ROOT/train/<class>/... or a "
                f"manifest with labels); {target.name!r} is unlabelled"
            )

    @abstractmethod
    def fit(self, target: Target | None, pool: ImageIndex) -> None:
        """Learn from the target (train a model, cluster features, ...)."""

    @abstractmethod
    def score(self, images: ImageIndex) -> np.ndarray:
        """One float32 per image; higher = more relevant; NaN = unreadable."""


# The registry instance lives in condpretrain.registry, below config, which lists its
# names as the choices of --method. This decorator is the one way a method joins it.
register_scorer = SCORERS.register


def create_scorer(name: str, context: ScoringContext) -> Scorer:
    """A new scorer for ``--method NAME``; an unknown name is a one-line error."""
    return SCORERS.get_class(name)(context)


def map_images(
    index: ImageIndex,
    context: ScoringContext,
    fn: Callable[[torch.Tensor], torch.Tensor],
    width: int,
    desc: str,
) -> np.ndarray:
    """Run ``fn`` over every image of ``index`` at the filter resolution, streamed.

    Returns an ``(len(index), width)`` float32 array, NaN rows for unreadable files
    (which are also recorded in ``context.skipped``). Memory is the output array plus a
    few batches in flight, whatever the size of the pool.
    """
    out = np.full((len(index), width), np.nan, dtype=np.float32)
    with torch.inference_mode(), progress_bar(len(index), desc=desc, unit="img") as bar:
        for batch, values in mapped_batches(index, context.config, context.device, fn):
            if values is not None:
                out[batch.rows[batch.good]] = values.reshape(-1, width)
            for row, error in zip(batch.rows, batch.errors, strict=True):
                if error:
                    context.skipped[index.paths[row]] = error
            bar.update(len(batch.rows))
    return out
