"""Confidence intervals over seeds, and paired comparisons of two methods over the same seeds.

Intervals are Student-t over independent seeds (each seed retrains and resamples). Never a
bootstrap with replacement for FID, KID or precision/recall: duplicated samples bias all three
(shared notes, metrics.md section 6).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int
    std: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def as_dict(self) -> dict:
        return {"mean": self.mean, "ci95": [self.low, self.high], "n": self.n, "std": self.std}


def t_interval(values, confidence: float = 0.95) -> Interval:
    """Mean and two-sided t confidence interval; n = 1 gives an unbounded interval (NaN ends)."""
    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0:
        raise ValueError("no values to aggregate")
    if not np.isfinite(x).all():
        raise ValueError("cannot aggregate NaN or infinite values")
    mean = float(x.mean())
    if x.size < 2:
        return Interval(mean, float("nan"), float("nan"), 1, float("nan"))
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=x.size - 1) * sd / np.sqrt(x.size))
    return Interval(mean, mean - half, mean + half, int(x.size), sd)


def paired_difference(a: dict[int, float], b: dict[int, float], confidence: float = 0.95) -> Interval | None:
    """t interval of a[s] - b[s] over the seeds both have; None if fewer than two shared seeds."""
    shared = sorted(set(a) & set(b))
    if len(shared) < 2:
        return None
    return t_interval([a[s] - b[s] for s in shared], confidence)
