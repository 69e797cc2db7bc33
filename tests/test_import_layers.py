"""No import cycles between the modules of condpretrain, lazy imports included.

A cycle works only as long as the modules happen to be imported in a lucky order (or
one side imports inside a function), and it makes the layers impossible to read. The
graph is built from the source, not by importing it: every ``import`` statement counts,
at module level or inside a function, except those under ``if TYPE_CHECKING:``, which
never run. Importing ``a.b.c`` also runs the ``__init__`` of the packages ``a.b``: that
counts too, except for a module's own packages, which are always initialised first.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path

ROOT = "condpretrain"


def package_dir() -> Path:
    # find_spec locates the package without running its __init__ (which imports everything).
    spec = importlib.util.find_spec(ROOT)
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


def module_files(base: Path) -> dict[str, Path]:
    """Dotted module name -> file, a package being its ``__init__.py``."""
    modules = {}
    for path in sorted(base.rglob("*.py")):
        parts = [ROOT, *path.relative_to(base).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def run_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """Every node below ``node`` except the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and is_type_checking(child.test):
            for other in child.orelse:
                yield other
                yield from run_nodes(other)
            continue
        yield child
        yield from run_nodes(child)


def imported_names(tree: ast.Module, module: str, is_package: bool) -> Iterator[str]:
    """The absolute dotted name of everything each import statement takes: a module, or
    an attribute of one (``from a.b import function`` gives ``a.b.function``)."""
    here = module if is_package else module.rpartition(".")[0]
    for node in run_nodes(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                base = f"{anchor}.{base}" if base else anchor
            yield from (f"{base}.{alias.name}" for alias in node.names)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", ""))
              == "import_module" and node.args and isinstance(node.args[0], ast.Constant)):
            yield str(node.args[0].value)


def import_graph() -> dict[str, set[str]]:
    files = module_files(package_dir())
    graph: dict[str, set[str]] = {name: set() for name in files}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        own = {module.rsplit(".", i)[0] for i in range(module.count(".") + 1)}
        for name in imported_names(tree, module, path.name == "__init__.py"):
            if not name.startswith(ROOT + "."):
                continue
            # A name that is no module is read off its parent, whose __init__ must have
            # run that far: a real edge even to one's own package.
            taken = name if name in files else name.rpartition(".")[0]
            parts = taken.split(".")
            # Every package on the way is initialised first: an edge, unless it is one of
            # the importer's own packages, which are initialised before the importer.
            implicit = {".".join(parts[:i]) for i in range(1, len(parts))} - own
            graph[module] |= ({taken} | implicit) & files.keys() - {module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle per strongly connected component of more than one module."""
    found = []
    for component in strongly_connected(graph):
        if len(component) > 1:
            found.append(shortest_cycle(graph, min(component), component))
    return sorted(found)


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative: no recursion limit to think about."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    components.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


def shortest_cycle(graph: dict[str, set[str]], start: str, within: set[str]) -> list[str]:
    """Breadth-first from ``start`` back to itself, inside its component."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & within):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{start} is in a component but on no cycle")


def test_every_run_import_is_seen():
    source = """
import condpretrain.data.images
from . import sibling
from ..errors import CondPretrainError
if TYPE_CHECKING:
    from condpretrain.never import Runs
def lazy():
    from condpretrain.models import build_resnet
    importlib.import_module("condpretrain.selection")
"""
    names = set(imported_names(ast.parse(source), "condpretrain.scoring.base", False))
    assert names == {"condpretrain.data.images", "condpretrain.scoring.sibling",
                     "condpretrain.errors.CondPretrainError", "condpretrain.models.build_resnet",
                     "condpretrain.selection"}


def test_package_inits_count_except_ones_own():
    graph = import_graph()
    assert "condpretrain.scoring.clustering" in graph["condpretrain.scoring"]
    # clustering imports condpretrain.data.sources: data/__init__ runs first.
    assert "condpretrain.data" in graph["condpretrain.scoring.clustering"]
    assert "condpretrain.features" not in graph["condpretrain.features.target"]
    assert "condpretrain.scoring.context" not in graph["condpretrain.scoring.base"]


def test_cycle_finder_on_a_toy_graph():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]


def test_no_import_cycles():
    graph = import_graph()
    tangled = sorted(sorted(c) for c in strongly_connected(graph) if len(c) > 1)
    assert not tangled, "import cycles (one cycle, then every module caught in it):\n" + "\n".join(
        f"{' -> '.join(cycle)}\n    [{', '.join(members)}]"
        for cycle, members in zip(cycles(graph), tangled, strict=True))
