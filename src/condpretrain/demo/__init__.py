"""The demo: embedded data (:mod:`.data`) and a Table-2 grid run on it (:mod:`.run`)."""

from condpretrain.demo.data import make_demo_data, pool_kinds
from condpretrain.demo.run import (
    DemoConfig,
    DemoResult,
    demo,
    demo_experiment,
    short_demo_methods,
)

__all__ = ["DemoConfig", "DemoResult", "demo", "demo_experiment", "make_demo_data",
           "pool_kinds", "short_demo_methods"]
