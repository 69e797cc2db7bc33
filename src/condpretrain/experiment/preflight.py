"""What ``run`` checks before any work: what would otherwise fail only when a cell's turn
came, maybe hours into the grid. Each problem is one line naming the target.

* a method that needs its target's labels (for the target-trained model it reads) on a
  target that has none, such as a VOC folder;
* a detection or segmentation target's VOC folders: every split the task reads, with
  its annotations or masks (the task's own up-front checks: seconds, about 5 s for
  VOC07+12).
"""

from __future__ import annotations

from typing import Any, Protocol

from condpretrain.config import SelectConfig
from condpretrain.config.select import fused_methods
from condpretrain.data.sources import open_target
from condpretrain.errors import CondPretrainError
from condpretrain.experiment.grid import Cell
from condpretrain.experiment.results import RANDOM_INIT
from condpretrain.experiment.schema import ExperimentConfig
from condpretrain.experiment.target_schema import FINETUNE_TASK
from condpretrain.log import get_logger
from condpretrain.registry import DOWNSTREAM_TASKS, SCORERS

log = get_logger(__name__)


class Grid(Protocol):
    """What the checks need of the runner (``runner.Experiment``)."""

    config: ExperimentConfig

    def select_config(self, target: str, method: str, seed: int) -> SelectConfig: ...

    def target_config(self, cell: Cell, init: Any) -> Any: ...


def check_grid(grid: Grid) -> None:
    """Every check, cheapest first."""
    check_labels(grid)
    check_downstream_data(grid)


def check_labels(grid: Grid) -> None:
    """Refuse a method that needs labels on a target that has none."""
    config = grid.config
    for target in config.targets:
        if config.mix_of(target) is not None:
            continue  # its parts are targets of the file, checked as such
        needing = [method for method in config.methods
                   if any(_needs_labels(grid.select_config(target, part, config.seeds[0]))
                          for part in fused_methods(method) or [method])]
        if not needing:
            continue
        path = config.target_path(target)
        if not open_target(path, f"targets.{target}").labelled:
            free = [name for name in SCORERS.names(having="in_paper")
                    if not _needs_labels(grid.select_config(target, name, config.seeds[0]))]
            raise CondPretrainError(
                f"targets.{target}: {path} is unlabelled, and methods {', '.join(needing)} "
                f"need its labels (a target-trained model): use methods that do not "
                f"({', '.join(free)}), or give them other features, METHOD@moco:target "
                "(a MoCo-v2 trained on the target: the paper's for VOC) or METHOD@classic")


def _needs_labels(config: SelectConfig) -> bool:
    return bool(SCORERS.get_class(config.method).needs_labels(config))


def check_downstream_data(grid: Grid) -> None:
    """Load every split a downstream target's task reads, as its run will (each mode's
    options, once per distinct set of them): a missing folder, split list, annotation or
    mask fails here, in the task's own words."""
    config = grid.config
    for target in config.targets:
        task = config.target_task(target)
        if task == FINETUNE_TASK or config.mix_of(target) is not None:
            continue
        vocs, checked = config.target_vocs(target), set()
        for mode in config.modes:
            cell = Cell(target, mode, 0, 0.0, RANDOM_INIT, config.seeds[0], task=task)
            options = grid.target_config(cell, None)
            key = (options.train_split, options.test_split)
            if key not in checked:
                checked.add(key)
                _load_splits(target, DOWNSTREAM_TASKS.get_class(task)(vocs, options))


def _load_splits(target: str, task: Any) -> None:
    try:
        train, test = task.train_items(), task.test_items()
    except CondPretrainError as exc:
        raise CondPretrainError(f"targets.{target}: {exc}") from None
    for split, items in ((task.config.train_split, train), (task.config.test_split, test)):
        if not items:
            raise CondPretrainError(f"targets.{target}: the {split} split of "
                                    f"{', '.join(map(str, task.vocs))} lists no images")
    log.info("target %s (%s): %d training and %d test images", target, task.name, len(train),
             len(test))


__all__ = ["check_grid", "check_labels", "check_downstream_data"]
