"""The demo: a small but real Table-2 experiment on data that ships with our
dependencies (see :mod:`.data`), with the ``small`` preset, three seeds, two budgets and
two pre-training resolutions; its report opens with the findings computed from it.

The default grid is random selection, the domain classifier and both clustering
methods (what fits in minutes on a 2-core CPU); ``--full`` adds the others.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from condpretrain import atomic, runlock
from condpretrain.config import PRESET_NAMES, Config, option
from condpretrain.config.common import parse_fractions
from condpretrain.config.load import yaml_loads
from condpretrain.demo.data import TARGET_KIND, demo_data_dirs, make_demo_data
from condpretrain.errors import CondPretrainError
from condpretrain.experiment import (
    ExperimentConfig,
    ExperimentResult,
    Steps,
    parse_experiment,
    run,
)
from condpretrain.log import get_logger
from condpretrain.registry import SCORERS
from condpretrain.report import report

if TYPE_CHECKING:  # the report's module loads the plotting libraries: only when it runs
    from condpretrain.report.build import ReportResult

log = get_logger(__name__)


def short_demo_methods() -> list[str]:
    """What fits in minutes on 2 cores (each scorer says whether it is in); --full: all."""
    return SCORERS.names(having="in_short_demo")



def _yaml_mapping(value: Any) -> Any:
    """A section given on the command line as YAML text, e.g. ``--pretrain 'epochs: 5'``."""
    if isinstance(value, str):
        try:
            return yaml_loads(value)
        except yaml.YAMLError:
            pass  # left as text, for the check to refuse naming the flag
    return value


@dataclass
class DemoConfig(Config):
    """Sizes of the demo data and grid; the defaults finish in minutes on a 2-core CPU."""

    image_size: int = option(24, "side of the rendered and target images (px)", low=8)
    pool_images: int = option(1200, "images in the pool (about; four sources: rendered "
                              "digits, other characters, photo crops, shapes)", low=100)
    target_share: float = option(0.08, "share of the pool that is the target's kind "
                                 "(rendered digits)", low=0, high=0.5, low_open=True)
    target_train_per_class: int = option(3, "digits per class to fine-tune on (few: "
                                         "where pre-training matters)", low=1)
    target_test_per_class: int = option(50, "digits per class to test on", low=1)
    budgets: list[float] = option(default_factory=lambda: [0.06, 0.12],
                                  help="shares of the pool to select, e.g. 0.06 or 6%",
                                  low=0, high=1, low_open=True, high_open=True,
                                  parse=parse_fractions)
    resolutions: list[int] = option(default_factory=lambda: [24, 12],
                                    help="pre-training resolutions (px)", low=0, low_open=True)
    methods: list[str] = option(default_factory=short_demo_methods,
                                help="selection methods", choices=SCORERS.choices())
    full: bool = option(False, "run every selection method (adds active learning and its "
                        "inverse; about twice as long)")
    seeds: list[int] = option(default_factory=lambda: [0, 1, 2], help="seeds of the grid's runs")
    seed: int = option(0, "seed of the data generator")
    preset: str = option("small", "preset of every command's options", choices=PRESET_NAMES)
    select: dict[str, Any] = option(default_factory=dict,
                                    help="options of `select`, as YAML", parse=_yaml_mapping,
                                    metavar="YAML")
    # Mirrors change digits and letters. Selection and fine-tuning see the images at
    # their own size (demo_experiment), as the paper filters and fine-tunes at full size.
    pretrain: dict[str, Any] = option(default_factory=lambda: {"flip": False},
                                      help="options of `pretrain`, as YAML",
                                      parse=_yaml_mapping, metavar="YAML")
    finetune: dict[str, Any] = option(default_factory=lambda: {"flip": False},
                                      help="options of `finetune`, as YAML",
                                      parse=_yaml_mapping, metavar="YAML")

    def grid_methods(self) -> list[str]:
        return SCORERS.names() if self.full else list(self.methods)


@dataclass
class DemoResult:
    out_dir: Path
    experiment: ExperimentResult
    report: ReportResult
    seconds: float


def _check_same_demo(saved: Path, settings: dict) -> None:
    """Resuming a demo is fine; resuming it with other data or settings would mix results."""
    before = atomic.read_json(saved, default=None)
    if not isinstance(before, dict):
        return
    changed = [k for k in settings if k in before and before[k] != settings[k]]
    if changed:
        raise CondPretrainError(f"--out {saved.parent} holds a demo run with another "
                                f"{changed[0]!r}; choose another --out")


def demo_experiment(pools: dict[str, Path], target: Path,
                    config: DemoConfig) -> ExperimentConfig:
    """The demo's grid, checked like an experiment file (errors name it ``demo``)."""
    return parse_experiment({
        "name": f"demo: handwritten digits from a pool where {TARGET_KIND} are "
                f"{config.target_share:.0%}",
        # Absolute: the experiment.yaml saved in the output folder must work from anywhere.
        "pool": [f"{name}={path.resolve()}" for name, path in pools.items()],
        "targets": {"digits": str(target.resolve())},
        "preset": config.preset,
        "methods": config.grid_methods(),
        "budgets": list(config.budgets),
        "resolutions": list(config.resolutions),
        "seeds": list(config.seeds),
        "select": {"filter_resolution": config.image_size, **config.select},
        "pretrain": dict(config.pretrain),
        "finetune": {"resolution": config.image_size, **config.finetune},
    }, where="demo")


def demo(out: str | Path = "condpretrain-demo", config: DemoConfig | None = None,
         steps: Steps | None = None) -> DemoResult:
    """Make the data, run the grid (resumable), write the report."""
    config = config or DemoConfig()
    config.validate()
    out = Path(out)
    started = time.perf_counter()
    # Checked before any image is written: a bad option fails in seconds, not minutes.
    experiment = demo_experiment(*demo_data_dirs(out / "data"), config)
    with runlock.hold(out):  # one demo per folder; the grid's own hold nests in it
        _check_same_demo(out / "demo.json", asdict(config))
        log.info("demo: writing the embedded data under %s", out / "data")
        make_demo_data(out / "data", config)
        atomic.write_json(out / "demo.json", asdict(config))
        result = run(experiment, out, steps)
        written = report(out)
    return DemoResult(out, result, written, time.perf_counter() - started)


__all__ = ["DemoConfig", "DemoResult", "demo", "demo_experiment", "short_demo_methods"]
