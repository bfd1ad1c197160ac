"""Mean and spread over seeds, and the harmonic mean, as the literature reports them.

The spread is the sample standard deviation (ddof=1, ``statistics.stdev``), as numpy's
``std(ddof=1)`` and CoOp's ``parse_test_res.py`` mean +- std; one seed has no spread.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Iterable

from ..engine.evaluate import harmonic_mean

__all__ = ["Stat", "harmonic_mean"]


@dataclass(frozen=True)
class Stat:
    """A table cell: the mean of ``n`` values and their sample std (None for n < 2)."""

    mean: float | None
    std: float | None = None
    n: int = 0

    @classmethod
    def of(cls, values: Iterable[float]) -> "Stat":
        values = [float(v) for v in values]
        if not values:
            return cls(None, None, 0)
        std = statistics.stdev(values) if len(values) > 1 else None
        return cls(statistics.fmean(values), std, len(values))

    @classmethod
    def single(cls, value: float | None, n: int = 1) -> "Stat":
        """A derived number (an average of averages, an HM of means): no spread of its own."""
        return cls(value, None, n if value is not None else 0)
