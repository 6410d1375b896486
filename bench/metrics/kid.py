"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD^2 with the cubic polynomial
kernel k(x, y) = (x.y / d + 1)^3, averaged over seeded random subsets (clean-fid draws them from
the unseeded global RNG; here the seed is an argument and recorded)."""

from __future__ import annotations

import numpy as np


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    m, n = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


def kid(gen: np.ndarray, real: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> dict:
    gen = np.asarray(gen, np.float64)
    real = np.asarray(real, np.float64)
    if gen.shape[1] != real.shape[1]:
        raise ValueError(f"feature dimensions differ: {gen.shape[1]} vs {real.shape[1]}")
    if not (np.isfinite(gen).all() and np.isfinite(real).all()):
        raise ValueError("features contain NaN or infinite values")
    if min(len(gen), len(real)) < subset_size:
        raise ValueError(f"KID needs at least subset_size={subset_size} samples per set, got "
                         f"{len(gen)} generated and {len(real)} reference; lower kid_subset_size")
    rng = np.random.default_rng(seed)
    vals = np.array([
        _mmd2_unbiased(gen[rng.choice(len(gen), subset_size, replace=False)],
                       real[rng.choice(len(real), subset_size, replace=False)])
        for _ in range(subsets)
    ])
    return {"mean": float(vals.mean()), "std": float(vals.std()), "subsets": subsets, "subset_size": subset_size,
            "seed": seed}
