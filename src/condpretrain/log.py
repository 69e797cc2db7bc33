"""Logging and progress reporting; library code never prints.

Progress bars (tqdm) show only on a terminal; in logs and CI they stay quiet and the
logger carries one line per stage instead.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

logger = logging.getLogger("condpretrain")


def get_logger(name: str) -> logging.Logger:
    return logger.getChild(name.rsplit(".", 1)[-1])


def progress(
    iterable: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it", **kwargs
) -> Iterator[T]:
    """A tqdm bar on a terminal, nothing otherwise (``disable=None`` means: not a TTY)."""
    return iter(
        tqdm(iterable, total=total, desc=desc, unit=unit, disable=None, dynamic_ncols=True,
             leave=False, file=sys.stderr, **kwargs)
    )


def progress_bar(total: int | None, desc: str = "", unit: str = "it", **kwargs) -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, disable=None, dynamic_ncols=True,
                leave=False, file=sys.stderr, **kwargs)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (it may be swapped, e.g. by a test runner)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_cli_logging(verbose: bool = False) -> None:
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
