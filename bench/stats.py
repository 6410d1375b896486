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


def paired_p_value(a: dict[int, float], b: dict[int, float]) -> float | None:
    """Two-sided paired t-test p-value of a - b over the seeds both have (the test whose 95%
    interval `paired_difference` gives); None with fewer than two shared seeds, 1.0 when every
    difference is zero, 0.0 when they are identical and non-zero."""
    shared = sorted(set(a) & set(b))
    if len(shared) < 2:
        return None
    d = np.array([a[s] - b[s] for s in shared], dtype=np.float64)
    sd = d.std(ddof=1)
    if sd == 0:
        return 1.0 if d.mean() == 0 else 0.0
    t = d.mean() / (sd / np.sqrt(d.size))
    return float(2 * stats.t.sf(abs(t), df=d.size - 1))


def holm(p_values: dict, alpha: float = 0.05) -> dict:
    """Holm-Bonferroni step-down adjusted p-values for a family of comparisons (key -> p). A
    comparison is significant at family-wise error rate `alpha` when its adjusted p < alpha."""
    order = sorted(p_values, key=lambda k: p_values[k])
    m, running, out = len(order), 0.0, {}
    for i, key in enumerate(order):
        running = max(running, min(1.0, (m - i) * p_values[key]))
        out[key] = running
    return out


def minimum_detectable_effect(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean difference a two-sided paired t-test at level `alpha` detects with
    probability `power`, given the per-seed difference's standard deviation and n seeds: solved
    exactly on the noncentral t distribution (the usual (t_a + t_b) sd / sqrt(n) shortcut
    overstates the power at few seeds). NaN below two seeds."""
    from scipy.optimize import brentq

    if n < 2 or not np.isfinite(sd):
        return float("nan")
    df, crit = n - 1, stats.t.ppf(1 - alpha / 2, n - 1)

    def shortfall(delta: float) -> float:
        lower = stats.nct.cdf(-crit, df, delta)  # the wrong-sign tail; scipy returns NaN where it is ~0
        return stats.nct.sf(crit, df, delta) + (lower if np.isfinite(lower) else 0.0) - power

    return float(brentq(shortfall, 0.0, 40.0) * sd / np.sqrt(n))


def bootstrap_interval(values, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (scipy.stats.bootstrap, seeded: deterministic),
    shown beside the t interval where n <= 5; over units of replication (seeds, subjects), never
    over samples of FID/KID (module docstring). (nan, nan) below two values or with no spread."""
    x = np.asarray(list(values), dtype=np.float64)
    if x.size < 2 or np.all(x == x[0]):
        return float("nan"), float("nan")
    res = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=resamples, method="percentile",
                          random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def probability_of_improvement(diffs, better: int = 1) -> float:
    """The share of paired units whose difference lies on the improving side (`better` = +1 or -1),
    ties counting one half: the paired form of rliable's probability of improvement."""
    d = np.asarray(list(diffs), dtype=np.float64) * better
    if d.size == 0:
        return float("nan")
    return float((np.sum(d > 0) + 0.5 * np.sum(d == 0)) / d.size)


def small_n_text(values, confidence: float, better: int | None, scale: float = 1.0, unit: str = "") -> str:
    """'; percentile bootstrap [a, b]; P(improvement) p' for n <= 5 (empty otherwise); the bounds
    times `scale`, followed by `unit` (e.g. 100 and "%")."""
    x = list(values)
    if len(x) > 5 or len(x) < 2:
        return ""
    lo, hi = bootstrap_interval(x, confidence)
    text = (f"; percentile bootstrap {100 * confidence:.3g}% [{scale * lo:+.3g}{unit}, {scale * hi:+.3g}{unit}]"
            if np.isfinite(lo) else "")
    if better:
        text += f"; P(improvement) {probability_of_improvement(x, better):.2f} over {len(x)} units"
    return text
