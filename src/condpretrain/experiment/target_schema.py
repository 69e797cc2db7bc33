"""The ``targets`` of an experiment file: what each target is, and what trains on it.

A target is a folder, a mapping of its folder and its own options, or a mix of other
targets (:mod:`.mix_schema`)::

    targets:
      cars: /data/cars                                  # fine-tuned (classification)
      fmow: {path: /data/fmow, finetune: {optimizer: adam}}
      voc07: {path: VOCdevkit/VOC2007, task: detect,    # Faster R-CNN instead
              voc: [VOCdevkit/VOC2007, VOCdevkit/VOC2012], detect: {iterations: 24000}}

``task`` names the command that trains on the target after pre-training: ``finetune``
(the default: a classification target) or a downstream task (``detect``, ``segment``).
Selection always reads ``path``; a downstream task trains on ``voc`` (its ``--voc``
folders, the first one tested; default: ``path``), which lets detection select for
VOC2007 and train on VOC07+12 as MoCo does. A target's own sections are ``select`` and
its task's. Every error is one line naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from condpretrain.errors import CondPretrainError
from condpretrain.experiment.mix_schema import is_mix, parse_mix_spec
from condpretrain.registry import DOWNSTREAM_TASKS

FINETUNE_TASK = "finetune"  # a classification target: the default task
# The downstream tasks an experiment can run; each is a registered DownstreamTask and a
# section of the file holding its command's options (schema.SECTIONS).
DOWNSTREAM_SECTIONS = ("detect", "segment")
TASKS = (FINETUNE_TASK, *DOWNSTREAM_SECTIONS)
# What a target may set for its own cells. Not pre-training: the entire-pool run does
# not depend on the target and serves them all. Of the task sections, only its task's.
TARGET_SECTIONS = ("select", *TASKS)
TARGET_KEYS = ("path", "task", "voc", *TARGET_SECTIONS)

# a folder, {path: folder, task?: ..., voc?: [...], <section>: {...}}, or {mix: {...}}
TargetSpec = str | dict[str, Any]


def one_or_many(value: Any) -> list[Any]:
    """One value is a list of one: a path may hold spaces or commas, never split it."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def parse_targets(value: Any) -> dict[str, TargetSpec]:
    """``{name: spec}``, or a list of ``NAME=FOLDER`` or ``FOLDER`` (named after it). A
    section's options are checked later, by ``schema.parse_target``, with the sections
    of the file; a mix's parts with the other targets (``mix_schema.check_mixes``)."""
    if isinstance(value, dict):
        pairs = [(str(name), spec) for name, spec in value.items()]
    else:
        pairs = [_target_pair(spec) for spec in one_or_many(value)]
    targets: dict[str, TargetSpec] = {}
    for name, spec in pairs:
        if not name or "/" in name or name.startswith("."):
            raise CondPretrainError(f"targets: {name!r} is not a usable name")
        if name in targets:
            raise CondPretrainError(f"targets: two targets are named {name!r}")
        targets[name] = target_spec(spec, f"targets.{name}")
    return targets


def target_spec(spec: Any, key: str) -> TargetSpec:
    """A folder, or a mapping of its path, task and own sections (a plain folder when
    it has none of them, so a file written before tasks existed reads the same)."""
    if not isinstance(spec, dict):
        return text(spec, key)
    spec = {str(k).replace("-", "_"): v for k, v in spec.items()}
    if is_mix(spec):
        return parse_mix_spec(spec, key)
    for name in spec:
        if name not in TARGET_KEYS:
            raise CondPretrainError(f"{key}.{name}: not settable per target (known: "
                                    f"{', '.join(TARGET_KEYS)})")
    if "path" not in spec:
        raise CondPretrainError(f"{key}.path: required")
    task = _task(spec.get("task", FINETUNE_TASK), f"{key}.task")
    sections = {name: spec[name] for name in TARGET_SECTIONS if spec.get(name)}
    for name, given in sections.items():
        if name in TASKS and name != task:
            raise CondPretrainError(f"{key}.{name}: the target's task is {task}, so its "
                                    f"options go under '{task}'")
        if not isinstance(given, dict):
            raise CondPretrainError(f"{key}.{name}: expected a mapping of option: value, "
                                    f"got {given!r}")
    parsed: dict[str, Any] = {"path": text(spec["path"], f"{key}.path")}
    if task != FINETUNE_TASK:
        parsed["task"] = task
    if "voc" in spec:
        parsed["voc"] = _voc_folders(spec["voc"], task, f"{key}.voc")
    parsed.update(sections)
    return parsed if len(parsed) > 1 else parsed["path"]


def _task(value: Any, key: str) -> str:
    if value not in TASKS:
        raise CondPretrainError(f"{key}: {value!r} is not a task (known: {', '.join(TASKS)})")
    return str(value)


def _voc_folders(value: Any, task: str, key: str) -> list[str]:
    """The downstream task's ``--voc`` folders: as many as the task takes."""
    if task == FINETUNE_TASK:
        raise CondPretrainError(f"{key}: only a detect or segment target trains on VOC "
                                "folders (set task)")
    folders = [text(v, key) for v in one_or_many(value)]
    allowed = DOWNSTREAM_TASKS.attribute(task, "voc_folders", 1)
    if not folders or (allowed is not None and len(folders) != allowed):
        wanted = "one or more" if allowed is None else str(allowed)
        raise CondPretrainError(f"{key}: {task} trains on {wanted} VOC folder(s), got "
                                f"{len(folders)}")
    if len(set(folders)) != len(folders):
        raise CondPretrainError(f"{key}: a folder is named twice (its images would count "
                                "twice)")
    return folders


def _target_pair(spec: Any) -> tuple[str, str]:
    value = text(spec, "targets")
    name, sep, path = value.partition("=")
    return (name, path) if sep and name else (Path(value).name, value)


def text(value: Any, key: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or str(value) == "":
        raise CondPretrainError(f"{key}: expected text, got {value!r}")
    return str(value)


def task_of(spec: TargetSpec | None) -> str:
    """The command that trains on a target (a mix has none: its parts do)."""
    return spec.get("task", FINETUNE_TASK) if isinstance(spec, dict) else FINETUNE_TASK


def resolve_target(spec: TargetSpec, resolve: Any) -> TargetSpec:
    """``spec`` with its folders (``path``, ``voc``) passed through ``resolve``."""
    if is_mix(spec):
        return spec
    if not isinstance(spec, dict):
        return str(resolve(spec))
    resolved = {**spec, "path": str(resolve(spec["path"]))}
    if "voc" in spec:
        resolved["voc"] = [str(resolve(v)) for v in spec["voc"]]
    return resolved


__all__ = ["FINETUNE_TASK", "DOWNSTREAM_SECTIONS", "TASKS", "TARGET_SECTIONS", "TARGET_KEYS",
           "TargetSpec", "one_or_many", "parse_targets", "target_spec", "task_of", "resolve_target", "text"]
