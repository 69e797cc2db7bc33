"""The experiment grid of the paper's Table 2: cells, shared work, a resumable results table.

A grid is targets x selection methods x budgets x pre-training resolutions x modes, plus
the two baselines (random initialisation = 0 %, the entire pool = 100 %), each repeated
over seeds. Every cell runs select -> pretrain -> finetune (a detection or segmentation
target: its task, detect or segment) and adds one row to ``OUT/results.csv``.

One module per job, each importing only those before it:

* :mod:`.results` - the results table (columns, read, write) and the baselines' names;
  the report reads this module and nothing else of the experiment;
* :mod:`.schema` - the experiment file (:class:`ExperimentConfig`) and its one validation
  (its ``targets`` in :mod:`.target_schema`, mixes in :mod:`.mix_schema`, the ``slurm``
  section in :mod:`.slurm_schema`);
* :mod:`.grid` - the cells and the folder layout that lets cells share work;
* :mod:`.selections` - scoring once, fusing, re-selecting every budget, and the charges;
* :mod:`.mixes` - a mixed target's subsets, merged from its parts' saved scores;
* :mod:`.preflight` - what ``run`` checks before any work (labels, VOC folders);
* :mod:`.steps` - the grid as cluster jobs, each after those it needs (:mod:`.launch`);
* :mod:`.runner` - running the cells (:func:`run`), resumable.
"""

from condpretrain.experiment.grid import Cell, Layout, cells
from condpretrain.experiment.results import (
    BASELINES,
    ENTIRE_POOL,
    RANDOM_INIT,
    RESULTS_FILE,
    budget_key,
    budget_label,
    method_label,
    read_results,
    write_results,
)
from condpretrain.experiment.runner import Experiment, ExperimentResult, Steps, run
from condpretrain.experiment.schema import ExperimentConfig, load_experiment, parse_experiment

__all__ = [
    "ExperimentConfig",
    "load_experiment",
    "parse_experiment",
    "Cell",
    "Layout",
    "cells",
    "Steps",
    "Experiment",
    "ExperimentResult",
    "run",
    "RESULTS_FILE",
    "RANDOM_INIT",
    "ENTIRE_POOL",
    "BASELINES",
    "budget_key",
    "budget_label",
    "method_label",
    "read_results",
    "write_results",
]
