"""Threshold-free statistics of a tracked curve, and whether its transition is step-like (issue 29).

* `auc_mean`: the mean of the metric over training, the trapezoid area under the curve divided
  by the span of steps -- no threshold, no event.
* `time_to_half`: the first step at which a monotone (isotonic) fit of the curve has made half of
  the run's own total change (start of the fit to its end); None for a curve that does not move
  in the improving direction.
* `shape`: a logistic (step in time) against an exponential decay fitted by least squares; the
  transition is "sudden" only where the logistic wins by an information criterion (AIC lower by
  at least 2) with its midpoint inside the tracked span; otherwise the crossing of a threshold is
  a "time to threshold", not a sudden convergence.
* `mean_curve_drawdown` / `drawdown_null`: the largest drop of a seed-averaged curve below its
  running maximum, and what averaged noise alone gives (simulated at the measured sd).
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np

DELTA_AIC = 2.0


def _arr(curve) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(curve, dtype=np.float64).reshape(-1, 2)
    ok = np.isfinite(c[:, 1])
    return c[ok, 0], c[ok, 1]


def auc_mean(curve) -> float:
    t, y = _arr(curve)
    if len(t) == 0:
        return float("nan")
    if len(t) == 1 or t[-1] == t[0]:
        return float(y.mean())
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(t)) / (t[-1] - t[0]))


def isotonic(y: np.ndarray, increasing: bool) -> np.ndarray:
    """Pool-adjacent-violators least-squares monotone fit."""
    v = list(y if increasing else -y)
    blocks = [[x, 1] for x in v]
    out: list[list[float]] = []
    for b in blocks:
        out.append(b)
        while len(out) > 1 and out[-2][0] / out[-2][1] > out[-1][0] / out[-1][1]:
            s, n = out.pop()
            out[-1][0] += s
            out[-1][1] += n
    fit = np.concatenate([[s / n] * int(n) for s, n in out])
    return fit if increasing else -fit


def time_to_half(curve, lower_is_better: bool = True) -> float | None:
    t, y = _arr(curve)
    if len(t) < 2:
        return None
    fit = isotonic(y, increasing=not lower_is_better)
    total = fit[-1] - fit[0]
    if total == 0:
        return None
    half = fit[0] + total / 2
    idx = np.nonzero((fit <= half) if lower_is_better else (fit >= half))[0]
    return float(t[idx[0]]) if len(idx) else None


def _aic(rss: float, n: int, k: int) -> float:
    return n * math.log(max(rss, 1e-300) / n) + 2 * k


def shape(curve, lower_is_better: bool = True) -> dict:
    """{"aic_logistic", "aic_exponential", "delta_aic" (exp - logistic), "midpoint", "sudden"}."""
    from scipy.optimize import curve_fit

    t, y = _arr(curve)
    n = len(t)
    out = {"aic_logistic": None, "aic_exponential": None, "delta_aic": None, "midpoint": None, "sudden": False}
    if n < 6:
        return out
    s = -1.0 if lower_is_better else 1.0  # fit in "falls over training" units
    z = -s * y
    span = t[-1] - t[0]
    tt = t - t[0]

    def expo(x, a, b, tau):
        return a + b * np.exp(-x / np.maximum(tau, 1e-9))

    def logi(x, a, b, x0, w):
        return a + b / (1 + np.exp(np.clip((x - x0) / np.maximum(w, 1e-9), -50, 50)))

    best_e, best_l = math.inf, (math.inf, None)
    rng = z.max() - z.min() or 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for tau in (span / 10, span / 3, span):
            try:
                p, _ = curve_fit(expo, tt, z, p0=[z[-1], z[0] - z[-1], tau], maxfev=5000)
                best_e = min(best_e, float(np.sum((expo(tt, *p) - z) ** 2)))
            except (RuntimeError, ValueError):
                pass
        for x0 in (span / 4, span / 2, 3 * span / 4):
            for w in (span / 40, span / 10):
                try:
                    p, _ = curve_fit(logi, tt, z, p0=[z[-1], z[0] - z[-1] or rng, x0, w], maxfev=5000)
                    rss = float(np.sum((logi(tt, *p) - z) ** 2))
                    if rss < best_l[0]:
                        best_l = (rss, p)
                except (RuntimeError, ValueError):
                    pass
    if not math.isfinite(best_e) or best_l[1] is None:
        return out
    aic_e, aic_l = _aic(best_e, n, 3), _aic(best_l[0], n, 4)
    mid = float(best_l[1][2] + t[0])
    out.update(aic_logistic=aic_l, aic_exponential=aic_e, delta_aic=aic_e - aic_l, midpoint=mid,
               sudden=bool(aic_e - aic_l >= DELTA_AIC and t[0] < mid < t[-1] and best_l[1][1] > 0))
    return out


def drawdown(values: Sequence[float], higher_is_better: bool = True) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v if higher_is_better else -v
    v = v[np.isfinite(v)]
    if not len(v):
        return float("nan")
    return float(np.max(np.maximum.accumulate(v) - v))


def mean_curve(curves: list) -> tuple[np.ndarray, np.ndarray] | None:
    """The pointwise mean of curves over their common length (evaluation index)."""
    arrs = [np.asarray(c, dtype=np.float64).reshape(-1, 2) for c in curves if len(c)]
    if not arrs:
        return None
    n = min(len(a) for a in arrs)
    return arrs[0][:n, 0], np.mean([a[:n, 1] for a in arrs], axis=0)


def drawdown_null(length: int, sd: float, runs: int, sims: int = 20_000, seed: int = 29) -> np.ndarray:
    """Drawdowns of the mean of `runs` flat noise curves of `length` at noise `sd` (simulated)."""
    z = np.random.default_rng(seed).standard_normal((sims, length)) * (sd / math.sqrt(runs))
    return np.max(np.maximum.accumulate(z, axis=1) - z, axis=1)
