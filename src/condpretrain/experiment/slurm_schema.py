"""The experiment file's ``slurm`` section: where ``run --launcher slurm`` submits each
step, and what each kind of step asks for. Every option is declared once, as the rest of
the file's are, and checked by :func:`parse_slurm` when the file is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from condpretrain.config import option, parse_mapping
from condpretrain.errors import CondPretrainError

if TYPE_CHECKING:  # the schema imports this module to check the section
    from condpretrain.experiment.schema import ExperimentConfig

# The steps that ask for resources: a target's training asks as its task (finetune, or
# the downstream task of a detect / segment target: MoCo trains detection on 8 GPUs).
STEP_KINDS = ("select", "pretrain", "finetune", "detect", "segment")


@dataclass
class StepResources:
    """What one kind of step asks Slurm for: ``slurm.pretrain: {gpus: 8, time: 4320}``."""

    gpus: int = option(1, "GPUs; more than one: one process per GPU (as torchrun)", low=0)
    cpus: int = option(8, "CPU cores per process", low=1)
    time: int = option(1440, "time limit in minutes (then requeued, resuming)", low=1)
    mem: int | None = option(None, "memory in GB (unset: the partition's default)", low=0,
                             low_open=True)


@dataclass
class SlurmConfig:
    """The ``slurm`` section: where ``run --launcher slurm`` submits each step."""

    partition: str | None = option(None, "Slurm partition (unset: the cluster's default)")
    account: str | None = option(None, "Slurm account")
    qos: str | None = option(None, "Slurm quality of service")
    folder: str | None = option(None, "submitit's job files and logs (unset: OUT/slurm)")
    requeues: int = option(3, "times a step may reach its time limit and be requeued", low=0)
    sbatch: dict[str, Any] = option(default_factory=dict,
                                    help="more #SBATCH options, e.g. {constraint: volta32gb}")
    select: dict[str, Any] = option(default_factory=dict, help="resources of a selection")
    pretrain: dict[str, Any] = option(default_factory=dict, help="resources of a pre-training")
    finetune: dict[str, Any] = option(default_factory=dict, help="resources of a fine-tuning")
    detect: dict[str, Any] = option(default_factory=dict, help="resources of a detection "
                                    "target's training (e.g. {gpus: 8}, MoCo's)")
    segment: dict[str, Any] = option(default_factory=dict, help="resources of a segmentation "
                                     "target's training")

    def resources(self, kind: str) -> StepResources:
        return StepResources(**getattr(self, kind))


def slurm_config(config: ExperimentConfig) -> SlurmConfig:
    """The experiment's ``slurm`` section (checked when the file was read)."""
    return SlurmConfig(**config.slurm)


def parse_slurm(values: dict[str, Any], where: str) -> dict[str, Any]:
    """The ``slurm`` section checked, each kind's resources included."""
    checked = parse_mapping(SlurmConfig, values, where, "slurm.")
    for kind in STEP_KINDS:
        if kind in checked:
            checked[kind] = parse_mapping(StepResources, checked[kind], where, f"slurm.{kind}.")
    for key, value in checked.get("sbatch", {}).items():
        if str(key).replace("_", "-") == "dependency":  # the launcher's own: the step graph
            raise CondPretrainError(f"{where}: slurm.sbatch.{key}: set by the launcher")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or value == "":
            raise CondPretrainError(f"{where}: slurm.sbatch.{key}: expected text, got {value!r}")
    return checked


__all__ = ["STEP_KINDS", "StepResources", "SlurmConfig", "slurm_config", "parse_slurm"]
