"""Confidence intervals for metrics, across seeds.

The unit of replication is the seed (each seed retrains and resamples): a Student-t interval
over per-seed values, and paired differences over the seeds two methods share. Never a bootstrap
with replacement for FID, KID or precision/recall: duplicated rows shrink the covariance rank,
turn KID's off-diagonal kernel terms into k(x, x) and make k-NN radii zero (shared notes
metrics.md section 6, where the percentile interval did not even contain the point estimate).
`subsample_sd` is the cheap secondary estimate from one sample set: m-out-of-n subsets drawn
without replacement, their spread scaled by sqrt(m / n).
"""

from __future__ import annotations

import numbers
from typing import Callable

import numpy as np

from bench.metrics._checks import MetricInputError
from bench.stats import Interval, paired_difference, t_interval


def scalar_metrics(metrics: dict) -> dict[str, float]:
    """Flatten a run's metrics to {name: float}: a dict with "mean" (KID, IS) gives its mean;
    other dicts give name.key for each float entry (precision/recall, EWC)."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, dict):
            if "mean" in value and name not in ("ewc",):
                out[name] = float(value["mean"])
            else:
                out.update({f"{name}.{k}": float(v) for k, v in value.items()
                            if isinstance(v, numbers.Real) and not isinstance(v, (bool, numbers.Integral))})
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def aggregate(runs: list[dict], confidence: float = 0.95) -> dict[str, dict]:
    """{metric: {"mean", "ci95": [low, high], "n", "std"}} over runs (each a run's metrics dict)."""
    if not runs:
        raise MetricInputError("no runs to aggregate")
    per: dict[str, list[float]] = {}
    for metrics in runs:
        for k, v in scalar_metrics(metrics).items():
            per.setdefault(k, []).append(v)
    return {k: t_interval(v, confidence).as_dict() for k, v in sorted(per.items())}


def compare(a: dict[int, dict], b: dict[int, dict], confidence: float = 0.95) -> dict[str, dict | None]:
    """Paired comparison of two methods over the seeds both ran: {metric: interval of a - b, or
    None with fewer than two shared seeds}."""
    fa = {s: scalar_metrics(m) for s, m in a.items()}
    fb = {s: scalar_metrics(m) for s, m in b.items()}
    names = sorted({k for m in fa.values() for k in m} & {k for m in fb.values() for k in m})
    out: dict[str, dict | None] = {}
    for name in names:
        iv: Interval | None = paired_difference({s: m[name] for s, m in fa.items() if name in m},
                                                {s: m[name] for s, m in fb.items() if name in m}, confidence)
        out[name] = None if iv is None else iv.as_dict()
    return out


def subsample_sd(metric: Callable[[np.ndarray, np.ndarray], float], gen: np.ndarray, real: np.ndarray,
                 m: int | None = None, repeats: int = 20, seed: int = 0) -> dict:
    """Spread of `metric` over `repeats` subsets of m generated samples (without replacement,
    default m = n/2), scaled by sqrt(m/n) to estimate the sampling SD at n. Validate against seeds."""
    n = len(gen)
    m = m or n // 2
    if not 2 <= m < n:
        raise MetricInputError(f"subsample size must be in [2, {n}), got {m}")
    rng = np.random.default_rng(seed)
    vals = np.array([metric(gen[rng.choice(n, m, replace=False)], real) for _ in range(repeats)])
    return {"sd": float(vals.std(ddof=1) * np.sqrt(m / n)), "m": m, "n": n, "repeats": repeats}
