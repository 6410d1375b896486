"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD^2, by default with the cubic
polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets.

Subsets are drawn from `np.random.RandomState(seed)`, generated set first, exactly as
torch-fidelity does, so with the same seed both give the same subsets (clean-fid draws them from
the unseeded global RNG). Arithmetic is float64 whatever the feature dtype. The reported `std`
is the spread over subsets, not a standard error; use seeds for intervals (bench.metrics.ci).
"""

from __future__ import annotations

import numpy as np

from bench.metrics._checks import MetricInputError, as_features, same_dim


def poly_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None,
                coef0: float = 1.0) -> np.ndarray:
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (x @ y.T * gamma + coef0) ** degree


def rbf_kernel(x: np.ndarray, y: np.ndarray, sigma: float = 10.0) -> np.ndarray:
    sq = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T
    return np.exp(-np.maximum(sq, 0) / (2 * sigma**2))


def mmd2_unbiased(kxx: np.ndarray, kxy: np.ndarray, kyy: np.ndarray) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012, eq. 3): diagonals of kxx and kyy excluded."""
    m, n = len(kxx), len(kyy)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


def kid(gen, real, subsets: int = 100, subset_size: int = 1000, seed: int = 0, kernel: str = "poly",
        degree: int = 3, gamma: float | None = None, coef0: float = 1.0, rbf_sigma: float = 10.0) -> dict:
    g = as_features(gen, "generated")
    r = as_features(real, "reference")
    same_dim(g, r)
    if subsets < 1:
        raise MetricInputError(f"KID needs at least one subset, got subsets={subsets}")
    if subset_size < 2:
        raise MetricInputError(f"KID subset_size must be >= 2, got {subset_size}")
    if min(len(g), len(r)) < subset_size:
        raise MetricInputError(f"KID needs at least subset_size={subset_size} samples per set, got {len(g)} "
                               f"generated and {len(r)} reference; lower the KID subset size")
    if kernel == "poly":
        def k(a, b):
            return poly_kernel(a, b, degree, gamma, coef0)
    elif kernel == "rbf":
        def k(a, b):
            return rbf_kernel(a, b, rbf_sigma)
    else:
        raise MetricInputError(f"unknown KID kernel {kernel!r}; use 'poly' or 'rbf'")
    rng = np.random.RandomState(seed)
    vals = np.empty(subsets)
    for i in range(subsets):
        x = g[rng.choice(len(g), subset_size, replace=False)]
        y = r[rng.choice(len(r), subset_size, replace=False)]
        vals[i] = mmd2_unbiased(k(x, x), k(x, y), k(y, y))
    return {"mean": float(vals.mean()), "std": float(vals.std()), "subsets": subsets, "subset_size": subset_size,
            "seed": seed, "kernel": kernel}
