"""Paired differences over seeds and their 95 % t-intervals: the statistics of the Findings.

Two cells are compared on the seeds they share, so the seed-to-seed variation that both
sides have in common (the same fine-tuning order, the same initialisation) cancels out.
The interval is Student's t on the per-seed differences; with fewer than two seeds there
is no spread to estimate, and the result says so rather than inventing one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from condpretrain.report.tables import stat

CONFIDENCE = 0.95

BETTER, WORSE, NO_DIFFERENCE, ONE_SEED = (
    "better", "worse", "no significant difference", "one seed: no interval")
VERDICTS = (BETTER, WORSE, NO_DIFFERENCE, ONE_SEED)


@dataclass(frozen=True)
class Paired:
    """Side A minus side B over the seeds both have (points of accuracy)."""

    seeds: tuple[str, ...]
    differences: tuple[float, ...]
    low: float | None = None  # the 95 % interval; None with one seed
    high: float | None = None

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def mean(self) -> float:
        return sum(self.differences) / self.n

    @property
    def verdict(self) -> str:
        """From the interval alone: above 0 better, below 0 worse, else no difference."""
        if self.low is None or self.high is None:
            return ONE_SEED
        if self.low > 0:
            return BETTER
        if self.high < 0:
            return WORSE
        return NO_DIFFERENCE

    def interval_text(self, digits: int = 2) -> str:
        if self.low is None or self.high is None:
            return "no interval (one seed)"
        return f"[{signed(self.low, digits)}, {signed(self.high, digits)}]"

    def text(self, digits: int = 2) -> str:
        """``+4.00 points, 95 % CI [+2.10, +5.90], n=3`` (or the one-seed form)."""
        if self.low is None:
            return f"{signed(self.mean, digits)} points (one seed: no interval)"
        return (f"{signed(self.mean, digits)} points, 95 % CI {self.interval_text(digits)}, "
                f"n={self.n}")


def signed(value: float, digits: int = 2) -> str:
    """``+1.23`` / ``-1.23``; a value that rounds to zero is ``+0.00``, never ``-0.00``
    (a difference of -1e-15 is float noise, not a loss)."""
    text = f"{value:+.{digits}f}"
    return f"{0.0:+.{digits}f}" if float(text) == 0 else text


def seed_order(seed: str) -> tuple[int, float, str]:
    """Seeds sort as numbers when they are numbers (2 before 10), else as text."""
    try:
        return (0, float(seed), seed)
    except ValueError:
        return (1, 0.0, seed)


def paired_difference(a: Mapping[str, float], b: Mapping[str, float]) -> Paired | None:
    """A minus B on the seeds present in both; None when they share no seed."""
    seeds = tuple(sorted(set(a) & set(b), key=seed_order))
    if not seeds:
        return None
    differences = tuple(a[s] - b[s] for s in seeds)
    if len(seeds) < 2:
        return Paired(seeds, differences)
    low, high = t_interval(differences)
    return Paired(seeds, differences, low, high)


def t_interval(values: tuple[float, ...], confidence: float = CONFIDENCE
               ) -> tuple[float, float]:
    """Student-t interval of the mean of ``values`` (at least two)."""
    from scipy.stats import t  # loaded only when a report is written

    summary = stat(values)  # mean and sample standard deviation, as the tables show them
    assert summary is not None and summary.n > 1
    half = float(t.ppf(0.5 + confidence / 2, summary.n - 1)) * summary.std / math.sqrt(summary.n)
    return summary.mean - half, summary.mean + half


def mean_ratio(a: Mapping[str, float], b: Mapping[str, float],
               seeds: tuple[str, ...]) -> float | None:
    """Mean of A over ``seeds`` divided by mean of B over the same seeds.

    A ratio of means rather than a mean of ratios: it is what the cost of the whole
    experiment would be, and one cheap seed cannot blow it up. None when a side has no
    value for those seeds or B's mean is not positive.
    """
    shared = [s for s in seeds if s in a and s in b]
    if not shared:
        return None
    denominator = sum(b[s] for s in shared) / len(shared)
    if denominator <= 0:
        return None
    return sum(a[s] for s in shared) / len(shared) / denominator


__all__ = ["Paired", "paired_difference", "t_interval", "mean_ratio", "seed_order", "signed",
           "BETTER", "WORSE", "NO_DIFFERENCE", "ONE_SEED", "VERDICTS", "CONFIDENCE"]
