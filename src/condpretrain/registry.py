"""Registries: the one place where the names of extension points live.

Every extension point (selection method, feature source, pre-training method, downstream
task, launcher) is a small class with a ``name``; its module registers it with a decorator::

    @SCORERS.register
    class MyScorer(Scorer):
        name = "my-method"
        label = "My Method"     # how reports show it (default: the name)
        order = 10              # rows are sorted by it (the paper's order; default: last)

The registries are the instances at the bottom of this module (SCORERS, FEATURES,
PRETRAIN_METHODS, DOWNSTREAM_TASKS, LAUNCHERS): import them from here (packages may re-export
them); never make a second instance for the same extension point, because the config
classes read their choices from these very objects.

Nothing else in the tool lists names: option choices, report labels and the paper's
row order are all read from here. A registry is a ``dict`` (name -> class), so code
that only looks things up needs nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from condpretrain.errors import CondPretrainError

T = TypeVar("T")

LAST = 1 << 20  # the order of a class that names none: after every built-in one


class Registry(dict[str, type[T]], Generic[T]):
    """Classes by name, for one kind of extension point."""

    def __init__(self, kind: str, option: str) -> None:
        super().__init__()
        self.kind = kind  # e.g. "scoring method", for messages
        self.option = option  # the option that picks one, e.g. "--method"

    def register(self, cls: type[T]) -> type[T]:
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} class needs a non-empty `name`")
        if name in self:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self[name] = cls
        return cls

    def unregister(self, name: str) -> None:
        self.pop(name, None)

    @contextmanager
    def registered(self, cls: type[T]) -> Iterator[type[T]]:
        """Register ``cls`` for the duration of a block (tests, notebooks)."""
        self.register(cls)
        try:
            yield cls
        finally:
            self.unregister(cls.name)  # type: ignore[attr-defined]

    def get_class(self, name: str) -> type[T]:
        """The class called ``name``; an unknown name is a one-line error naming the option."""
        if name not in self:
            raise CondPretrainError(
                f"{self.option}: unknown {self.kind} {name!r} (known: {', '.join(self.names())})")
        return self[name]

    def names(self, having: str | None = None) -> list[str]:
        """Every name, in the registered classes' ``order`` (then by name); with
        ``having``, only those whose class sets that flag (missing counts as true)."""
        chosen = [n for n in self if having is None or getattr(self.get(n), having, True)]
        return sorted(chosen, key=lambda n: (self.order(n), n))

    def order(self, name: str) -> int:
        return int(getattr(self.get(name), "order", LAST))

    def label(self, name: str) -> str:
        """How reports show ``name``: the class's ``label``, else the name itself."""
        cls = self.get(name)
        return str(getattr(cls, "label", None) or name) if cls is not None else name

    def choices(self) -> Callable[[], list[str]]:
        """A callable for option choices: read when checked, so late registrations count."""
        return self.names

    def attribute(self, name: str, attribute: str, default: Any = None) -> Any:
        return getattr(self.get(name), attribute, default)


__all__ = ["Registry", "LAST"]


# The registries themselves live here, below every layer, so that options can list their
# choices (and --help their defaults) without importing the packages that fill them.
SCORERS: Registry = Registry("scoring method", "--method")
FEATURES: Registry = Registry("feature source", "--features")
PRETRAIN_METHODS: Registry = Registry("pre-training method", "--mode")
DOWNSTREAM_TASKS: Registry = Registry("downstream task", "COMMAND")
# How `run` gets the grid's steps done: in this process, or as cluster jobs.
LAUNCHERS: Registry = Registry("launcher", "--launcher")

__all__ += ["SCORERS", "FEATURES", "PRETRAIN_METHODS", "DOWNSTREAM_TASKS", "LAUNCHERS"]
