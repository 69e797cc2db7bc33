"""``plan``: predict the device-hours of an experiment grid from a short calibration run.

The grid's axes and sections mean what they mean in an experiment file (``budgets``,
``resolutions``, ``select: {...}``...), so a plan predicts exactly the runs that
``condpretrain run`` would make of the same settings; the ``--preset`` flag is the
commands' preset, as ``preset:`` is an experiment file's. The calibration options say
how long each throughput measurement runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from condpretrain.config import common
from condpretrain.config.base import PRESET_NAMES, Config
from condpretrain.config.load import yaml_loads
from condpretrain.config.options import option
from condpretrain.config.select import fused_methods, method_choices, parse_method
from condpretrain.errors import CondPretrainError
from condpretrain.registry import DOWNSTREAM_TASKS, PRETRAIN_METHODS, SCORERS

# The two baseline rows of the results table (experiment/results.py names them; the
# config layer sits below it, and tests/plan checks that both spell them alike).
BASELINE_ROWS = ("random-init", "entire-pool")
# The task of a classification target (experiment/target_schema.py names it too).
FINETUNE_TASK = "finetune"


def _tasks() -> list[str]:
    return [FINETUNE_TASK, *DOWNSTREAM_TASKS.choices()()]


def _all_or_none(value: Any) -> Any:
    """``true``: both baselines; ``false`` or ``none``: neither (as in an experiment file)."""
    if value is True or (isinstance(value, str) and value.lower() in ("true", "all")):
        return list(BASELINE_ROWS)
    if value is False or (isinstance(value, str) and value.lower() in ("false", "none")):
        return []
    return value


def parse_section(value: Any) -> Any:
    """A section's options: a mapping from YAML, or its YAML text from a flag
    (``--pretrain '{epochs: 2, moco: {batch_size: 32}}'``)."""
    if isinstance(value, str):
        try:
            parsed = yaml_loads(value)
        except Exception:  # noqa: BLE001 - left as text, refused by the mapping check
            return value
        return parsed if isinstance(parsed, dict) else value
    return value


_AXIS: dict[str, Any] = {"min_items": 1, "unique": True}


def _yaml_list(text: str) -> list[Any] | None:
    """``text`` as a YAML list when it is one (``[a, b]``); None otherwise."""
    if not text.lstrip().startswith("["):
        return None
    try:
        parsed = yaml_loads(text)
    except Exception:  # noqa: BLE001 - not a list: the caller reads it otherwise
        return None
    return parsed if isinstance(parsed, list) else None


def parse_folders(value: Any) -> Any:
    """Folders: a YAML list, or one folder (its name may hold commas or spaces)."""
    if isinstance(value, str):
        return _yaml_list(value) or [value]
    return value


def parse_methods(value: Any) -> Any:
    """The methods as an experiment file's ``methods:``: a YAML list (``'[random,
    "fuse:knn,random"]'``: a fusion holds a comma) or, from a flag, names separated by
    commas or spaces; each ``METHOD``, ``METHOD@FEATURES`` or ``fuse:A,B``, checked."""
    if isinstance(value, str):
        value = _yaml_list(value) or value.replace(",", " ").split()
    methods = value if isinstance(value, (list, tuple)) else [value]
    checked = []
    for method in methods:
        parts = fused_methods(method) if isinstance(method, str) else None
        if parts is not None and len(parts) < 2:  # a fusion cut at its comma
            raise CondPretrainError(f"--methods: {method!r} fuses one method; a fusion holds "
                                    "commas, so give the methods as a YAML list: --methods "
                                    "'[random, \"fuse:knn,random\"]'")
        try:
            checked.append(parse_method(method))
        except CondPretrainError as exc:
            raise CondPretrainError(f"--methods: {str(exc).removeprefix('--method ')}") from None
    return checked


def _section(command: str, per_mode: bool = True) -> Any:
    """The options of ``command`` as YAML, as the experiment file's section of that name."""
    own = " (a mode's name holds that mode's own)" if per_mode else ""
    return option(default_factory=dict, parse=parse_section, metavar="YAML",
                  help=f"options of `{command}`, as an experiment file's section{own}")


def _paper_methods() -> list[str]:
    return SCORERS.names(having="in_paper")


@dataclass
class PlanConfig(Config):
    """Calibrate throughput on this machine and predict the device-hours of a grid."""

    hours: float | None = option(None, "device-hours available: the plan marks the cells "
                                 "`condpretrain run` finishes within them, in its order",
                                 low=0, low_open=True, metavar="H")
    methods: list[str] = option(default_factory=_paper_methods,
                                help="selection methods (default: the paper's), each "
                                "METHOD (`condpretrain methods` lists them), METHOD@FEATURES "
                                "or fuse:A,B (a YAML list when one is a fusion: '[random, "
                                "\"fuse:knn,random\"]')",
                                choices=method_choices, parse=parse_methods,
                                metavar="METHODS", **_AXIS)
    budgets: list[float] = option(default_factory=lambda: [0.06, 0.12],
                                  help="shares of the pool to select, e.g. 0.06 or 6%",
                                  low=0, high=1, low_open=True, high_open=True,
                                  parse=common.parse_fractions, **_AXIS)
    resolutions: list[int] = option(default_factory=lambda: [224, 112],
                                    help="pre-training resolutions (px)", low=0, low_open=True,
                                    **_AXIS)
    modes: list[str] = option(default_factory=lambda: ["supervised"],
                              help="pre-training methods", choices=PRETRAIN_METHODS.choices(),
                              **_AXIS)
    seeds: list[int] = option(default_factory=lambda: [0], help="every cell runs once per seed",
                              **_AXIS)
    baselines: list[str] = option(default_factory=lambda: list(BASELINE_ROWS),
                                  help="baseline rows (true: both, false: none)",
                                  choices=BASELINE_ROWS, parse=_all_or_none, unique=True)
    select: dict[str, Any] = _section("select", per_mode=False)
    pretrain: dict[str, Any] = _section("pretrain")
    finetune: dict[str, Any] = _section("finetune")
    task: str = option(FINETUNE_TASK, "what trains on the target after pre-training: "
                       "finetune (a classification target) or a downstream task (detect, "
                       "segment: the target is a VOC folder)", choices=_tasks)
    voc: list[str] = option(default_factory=list, help="the VOC folders a detect or segment "
                            "target trains on, the first one tested (default: the target's "
                            "folder), as the experiment file's `voc:`: one folder, or a "
                            "YAML list '[VOC2007, VOC2012]'", metavar="FOLDER",
                            parse=parse_folders, unique=True)
    detect: dict[str, Any] = _section("detect")
    segment: dict[str, Any] = _section("segment")
    # A few hundred steps give a rate within a few per cent on a GPU; the first steps
    # (allocator growth, cuDNN autotuning, first decodes) are not part of the rate.
    steps: int = option(200, "calibration: training steps timed per kind of run, after "
                        "the warm-up", low=2)
    warmup_steps: int = option(20, "calibration: steps run before the timing starts", low=0)
    score_batches: int = option(50, "calibration: batches scored per selection method",
                                low=2)
    test_images: int = option(200, "calibration: test images a detect or segment "
                              "calibration run evaluates (the test pass is priced per image)",
                              low=1)
    device: str = common.device()

    # Every preset the commands know; the CPU ones calibrate less (a calibration is
    # never longer than the runs it prices, see plan/calibrate.py).
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        **{name: {} for name in PRESET_NAMES},
        "small": {"steps": 60, "warmup_steps": 5, "score_batches": 8, "test_images": 20},
        "quick": {"steps": 30, "warmup_steps": 3, "score_batches": 4, "test_images": 4},
    }

    def check(self) -> None:
        if self.voc and self.task == FINETUNE_TASK:
            raise CondPretrainError("--voc: only a detect or segment target trains on VOC "
                                    "folders (give --task)")
        for task in DOWNSTREAM_TASKS.choices()():  # each has a section of its options
            if getattr(self, task, None) and self.task != task:
                raise CondPretrainError(f"--{task}: options of a task the target does not "
                                        f"run (give --task {task})")


__all__ = ["PlanConfig", "BASELINE_ROWS", "FINETUNE_TASK", "parse_section"]
