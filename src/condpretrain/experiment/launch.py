"""Launchers: how ``run`` gets the grid's work done (``--launcher``, the LAUNCHERS registry).

* ``local`` - this process runs every cell in turn (:meth:`Experiment.run`);
* ``slurm`` - every step of :mod:`.steps` is a Slurm job submitted with submitit, each
  after the jobs it needs (``--dependency=afterok:...``), all at once; a step asking
  for several GPUs runs one process per GPU, each given the environment torchrun would
  give it (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``),
  from which :mod:`condpretrain.dist` joins the group as under torchrun.

A job carries the experiment folder and its step's id, nothing else: it reads
``OUT/experiment.yaml`` (checked like any experiment file) and runs that step with the
local runner's own functions, so its artefacts are those ``local`` makes. A job that is
preempted or reaches its time limit is requeued by submitit and resumes from its run's
own checkpoint. Running the launcher again submits what is still unfinished.

submitit's local executor (``SlurmLauncher(cluster="local")``) runs the same jobs as
processes on this machine; it knows no dependencies, so the steps go in rounds, each
waited for.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from condpretrain import atomic, runlock
from condpretrain.errors import CondPretrainError
from condpretrain.experiment.grid import cells, mixes_of
from condpretrain.experiment.results import RESULTS_FILE
from condpretrain.experiment.runner import SETTINGS_FILE, Experiment, ExperimentResult
from condpretrain.experiment.schema import ExperimentConfig, load_experiment
from condpretrain.experiment.slurm_schema import SlurmConfig, slurm_config
from condpretrain.experiment.steps import (
    Step,
    done_keys,
    finished,
    pending,
    resources,
    step_graph,
    waves,
)
from condpretrain.log import configure_cli_logging, get_logger
from condpretrain.registry import LAUNCHERS

log = get_logger(__name__)

JOBS_FILE = "jobs.json"  # OUT/slurm/jobs.json: step id -> job id of the latest submission
INSTALL_HINT = "pip install 'condpretrain[cluster]'"
TORCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                   "MASTER_PORT")


def launch(experiment: ExperimentConfig | str | Path, out: str | Path,
           launcher: str = "local") -> ExperimentResult | Submission:
    """Run (``local``) or submit (``slurm``) the grid of an experiment into ``out``."""
    if not isinstance(experiment, ExperimentConfig):
        experiment = load_experiment(experiment)
    return LAUNCHERS.get_class(launcher)().launch(experiment, Path(out))


@LAUNCHERS.register
class LocalLauncher:
    """The grid in this process, cell after cell (the default)."""

    name = "local"
    summary = "this process runs every cell in turn"

    def launch(self, config: ExperimentConfig, out: Path) -> ExperimentResult:
        return Experiment(config, out).run()


@dataclass
class Submission:
    """What the ``slurm`` launcher did."""

    out: Path
    jobs: dict[str, str]  # step id -> job id, submitted by this call
    jobs_file: Path | None  # None: nothing was submitted
    results_csv: Path
    complete: bool  # results.csv holds every cell (nothing was left, or the jobs were waited for)


# --------------------------------------------------------------------------- the job


class StepJob:
    """One step as a submitit job (picklable: two strings). submitit calls
    :meth:`checkpoint` when the job is preempted or out of time, and requeues what it
    returns: the same step, which resumes from its run's checkpoint."""

    def __init__(self, out: str, step: str) -> None:
        self.out = out
        self.step = step

    def __call__(self) -> str:
        configure_cli_logging()  # the job's log file is its console
        export_torch_environment()
        out = Path(self.out)
        config = load_experiment(out / SETTINGS_FILE)
        experiment = self.experiment(config, out)
        experiment.run_step(_ready_step(experiment, self.step))
        return self.step

    def experiment(self, config: ExperimentConfig, out: Path) -> Experiment:
        """The runner the step runs in (tests give it fake pipeline functions)."""
        return Experiment(config, out)

    def checkpoint(self) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(type(self)(self.out, self.step))


def _ready_step(experiment: Experiment, step_id: str) -> Step:
    """The step called ``step_id`` in the folder's grid, once what it needs is done."""
    graph = step_graph(experiment.layout, cells(experiment.config),
                       mixes_of(experiment.config))
    step = graph.get(step_id)
    if step is None:
        raise CondPretrainError(f"{experiment.out / SETTINGS_FILE}: its grid has no step "
                                f"{step_id!r} (the experiment changed after submitting?)")
    done = done_keys(experiment.out)
    missing = [need for need in step.needs if not finished(graph[need], experiment.layout, done)]
    if missing:
        raise CondPretrainError(f"step {step_id}: {missing[0]} is not finished (it failed or "
                                "was cancelled); run the grid again")
    return step


def export_torch_environment() -> None:
    """A job of several tasks (one per GPU): each exports what torchrun would set, from
    submitit's view of the job; a job of one task is one process, whatever its
    submitter's environment held."""
    from submitit import JobEnvironment
    from submitit.helpers import TorchDistributedEnvironment

    try:
        tasks = JobEnvironment().num_tasks
    except RuntimeError:  # called outside a submitit job (a debugger, a test): one process
        tasks = 1
    if tasks > 1:
        # CUDA_VISIBLE_DEVICES left as Slurm set it: dist.py picks cuda:LOCAL_RANK, as
        # under torchrun (Slurm's list may hold physical ids, not 0..n-1).
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    else:
        for name in TORCH_VARIABLES:
            os.environ.pop(name, None)


# --------------------------------------------------------------------------- slurm


@LAUNCHERS.register
class SlurmLauncher:
    """Submits the steps still unfinished; ``cluster="local"``: submitit's local
    executor, which runs them on this machine round by round."""

    name = "slurm"
    summary = "every step a Slurm job (submitit), each after the jobs it needs"

    def __init__(self, cluster: str = "slurm", job: type[StepJob] = StepJob,
                 queued: Callable[[], set[str]] | None = None) -> None:
        self.cluster = cluster
        self.job = job
        # ids of the jobs Slurm still holds; None: ask squeue (nothing for "local")
        self.queued = queued or (queued_slurm_jobs if cluster == "slurm" else set)

    def launch(self, config: ExperimentConfig, out: Path) -> Submission:
        _submitit()
        if self.cluster == "slurm" and shutil.which("sbatch") is None:
            raise CondPretrainError("--launcher slurm: sbatch is not on PATH; run it on a "
                                    "Slurm cluster's login node (or use --launcher local)")
        experiment = Experiment(config, out)
        jobs_file = out / "slurm" / JOBS_FILE
        # The folder's lock only while planning and submitting: the jobs take their run
        # folders' locks, and collect the folder's, while they run.
        with runlock.hold(out):
            experiment.prepare()
            jobs_file.parent.mkdir(exist_ok=True)
            todo = pending(config, experiment.layout)
            if not todo:
                log.info("every cell of %s is done: nothing to submit", out)
                return Submission(out, {}, None, out / RESULTS_FILE, True)
            self._refuse_twice(todo, jobs_file)
            if self.cluster != "local":
                return Submission(out, self._submit_all(config, out, todo, jobs_file),
                                  jobs_file, out / RESULTS_FILE, False)
        jobs = self._run_in_rounds(config, out, todo, jobs_file)
        return Submission(out, jobs, jobs_file, out / RESULTS_FILE, True)

    def _refuse_twice(self, todo: dict[str, Step], jobs_file: Path) -> None:
        """A step submitted before and still queued or running is not submitted again:
        the second job would find its run folder locked and fail."""
        before = atomic.read_json(jobs_file, default={})
        if not isinstance(before, dict):
            return
        alive = self.queued()
        busy = sorted(str(job) for step, job in before.items() if step in todo and job in alive)
        if busy:
            raise CondPretrainError(f"{jobs_file}: jobs {', '.join(busy)} of an earlier "
                                    "submission are still queued or running; wait for them or "
                                    "scancel them, then run again")

    def _submit_all(self, config: ExperimentConfig, out: Path, todo: dict[str, Step],
                    jobs_file: Path) -> dict[str, str]:
        """Every step at once, each after the jobs of the steps it needs."""
        jobs: dict[str, str] = {}
        try:
            for step in todo.values():  # needs come first
                jobs[step.id] = self._submit(config, out, step, [jobs[n] for n in step.needs])
        finally:  # what was submitted is recorded, also when a submission fails
            atomic.write_json(jobs_file, jobs)
        log.info("%d jobs submitted; their ids: %s", len(jobs), jobs_file)
        return jobs

    def _run_in_rounds(self, config: ExperimentConfig, out: Path, todo: dict[str, Step],
                       jobs_file: Path) -> dict[str, str]:
        """An executor without dependencies: submit a round, wait for all of it."""
        jobs: dict[str, str] = {}
        for number, round_ in enumerate(waves(todo), 1):
            submitted = [(step, self._submit_job(config, out, step, [])) for step in round_]
            jobs.update({step.id: job.job_id for step, job in submitted})
            atomic.write_json(jobs_file, jobs)
            log.info("round %d: %d job(s)", number, len(submitted))
            failed = [f for f in (_failure(step, job) for step, job in submitted) if f]
            if failed:
                more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
                raise CondPretrainError(failed[0] + more)
        return jobs

    def _submit(self, config: ExperimentConfig, out: Path, step: Step, after: list[str]) -> str:
        job_id = str(self._submit_job(config, out, step, after).job_id)
        log.info("%s: job %s%s", step.id, job_id, f" after {', '.join(after)}" if after else "")
        return job_id

    def _submit_job(self, config: ExperimentConfig, out: Path, step: Step,
                    after: list[str]) -> Any:
        slurm = slurm_config(config)
        executor = self._executor(slurm, out)
        executor.update_parameters(**job_parameters(config.name, step, slurm, after))
        try:
            return executor.submit(self.job(str(out), step.id))
        except Exception as exc:  # sbatch's refusal (a partition that does not exist...)
            raise CondPretrainError(f"--launcher slurm: submitting {step.id} failed: "
                                    f"{_reason(str(exc))}") from None

    def _executor(self, slurm: SlurmConfig, out: Path) -> Any:
        """A fresh executor per job: parameters left by the previous job never carry over."""
        submitit = _submitit()
        folder = Path(slurm.folder) if slurm.folder else out / "slurm"
        return submitit.AutoExecutor(folder=folder, cluster=self.cluster,
                                     slurm_max_num_timeout=slurm.requeues,
                                     local_max_num_timeout=slurm.requeues)


def job_parameters(name: str, step: Step, slurm: SlurmConfig, after: list[str]) -> dict[str, Any]:
    """submitit's parameters for ``step``: one node, one process per GPU."""
    need = resources(step, slurm)
    parameters: dict[str, Any] = {
        "name": re.sub(r"[^\w.:/-]", "_", f"{name}:{step.id}"), "timeout_min": need.time,
        "nodes": 1, "tasks_per_node": max(need.gpus, 1), "gpus_per_node": need.gpus,
        "cpus_per_task": need.cpus, "mem_gb": need.mem,
        "slurm_partition": slurm.partition, "slurm_account": slurm.account,
        "slurm_qos": slurm.qos,
        # a failed need cancels the job at once, rather than leaving it pending forever
        "slurm_additional_parameters": {**slurm.sbatch, "kill-on-invalid-dep": "yes"},
        "slurm_dependency": "afterok:" + ":".join(after) if after else None,
    }
    return {key: value for key, value in parameters.items() if value is not None}


def queued_slurm_jobs() -> set[str]:
    """Ids of this user's jobs that Slurm still holds (pending, running, requeued)."""
    try:
        found = subprocess.run(["squeue", "--noheader", "--me", "--format=%i"],
                               capture_output=True, text=True, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("squeue failed (%s): jobs still queued are not checked", exc)
        return set()
    return set(found.stdout.split())


def _failure(step: Step, job: Any) -> str | None:
    """Waits for ``job``; what went wrong with it, in one line, or None."""
    try:
        job.results()  # every task's (one per GPU)
    except Exception as exc:  # submitit's account of the job, read back from its files
        return (f"step {step.id} failed (job {job.job_id}, log {job.paths.stderr}): "
                f"{_reason(str(exc))}")
    return None


def _reason(text: str) -> str:
    """The line of a job's failure that says what went wrong: the exception's own line
    of its traceback, else the first line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    raised = [line for line in lines
              if re.match(r"^[\w.]+(Error|Exception|Exit|Interrupt)\b:?", line)]
    line = (raised[-1] if raised else lines[0]) if lines else "no output"
    return line if len(line) <= 300 else line[:297] + "..."


def _submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise CondPretrainError(f"--launcher slurm needs submitit: {INSTALL_HINT}") from None
    return submitit


__all__ = ["launch", "LocalLauncher", "SlurmLauncher", "Submission", "StepJob",
           "export_torch_environment", "job_parameters", "queued_slurm_jobs", "JOBS_FILE"]
