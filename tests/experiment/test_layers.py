"""The experiment, report and demo layers, read from the source (nothing is imported).

One way only: results <- schema <- grid <- runner; the report reads the results module
and nothing else of the experiment; the experiment never reaches up to the API, the
report or the demo. And none of them lists the names of selection methods or modes:
those live in the registries.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(next(iter(importlib.util.find_spec("condpretrain").submodule_search_locations)))


def sources(*parts: str) -> list[Path]:
    where = ROOT.joinpath(*parts)
    return sorted(where.rglob("*.py")) if where.is_dir() else [where.with_suffix(".py")]


def imports(path: Path) -> set[str]:
    """Every module (or module.attribute) an import statement of ``path`` names,
    lazy ones included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert not node.level, f"{path}: relative import"
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("condpretrain")}


def test_report_reads_only_the_results_module_of_the_experiment():
    for path in sources("report"):
        for name in imports(path):
            if name.startswith("condpretrain.experiment"):
                assert name.startswith("condpretrain.experiment.results."), (path, name)


@pytest.mark.parametrize("above", ["condpretrain.api", "condpretrain.report",
                                   "condpretrain.demo", "condpretrain.cli"])
def test_the_experiment_never_imports_the_layers_above_it(above: str):
    for path in sources("experiment"):
        assert not any(n == above or n.startswith(above + ".") for n in imports(path)), path


def test_experiment_modules_import_one_way():
    order = ["results", "schema", "grid", "runner"]
    for i, module in enumerate(order):
        later = {f"condpretrain.experiment.{m}" for m in order[i + 1:]}
        for name in imports(ROOT / "experiment" / f"{module}.py"):
            assert not any(name.startswith(m) for m in later), (module, name)


def test_the_demo_and_api_import_what_they_use_from_where_it_is_defined():
    assert not any(n.startswith("condpretrain.api") for path in sources("demo")
                   for n in imports(path))
    api = imports(ROOT / "api.py")
    assert "condpretrain.experiment.run" in api and "condpretrain.report.report" in api
    assert not {"condpretrain.demo.run", "condpretrain.demo.report"} & api


@pytest.mark.parametrize("part", ["experiment", "report", "demo"])
def test_no_method_or_mode_names_are_listed(part: str):
    listed = ("domain-classifier", "clustering-avg", "clustering-min", "active-learning",
              "Domain Cls.", "Clustering (", "\"supervised\"", "\"moco\"")
    for path in sources(part.removesuffix(".py")):
        text = path.read_text()
        assert not [n for n in listed if n in text], path


@pytest.mark.parametrize("part", ["experiment", "report", "demo", "api.py"])
def test_modules_stay_small(part: str):
    for path in sources(part.removesuffix(".py")):
        assert len(path.read_text().splitlines()) < 400, path
