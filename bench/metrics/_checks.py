"""Input validation shared by every metric: one clear error per kind of bad input.

`MetricInputError` is both a `ValueError` (what a library user expects) and a `BenchError` (so
the CLI prints one line and exits 2).
"""

from __future__ import annotations

import numpy as np

from bench.errors import BenchError


class MetricInputError(BenchError, ValueError):
    pass


def as_features(x, what: str = "features", min_rows: int = 2) -> np.ndarray:
    """An (N, D) float64 array of finite values with N >= min_rows (torch tensors accepted)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype == object or not np.issubdtype(x.dtype, np.number):
        raise MetricInputError(f"{what}: expected a numeric (N, D) array, got dtype {x.dtype}")
    if x.ndim != 2:
        raise MetricInputError(f"{what}: expected an (N, D) array, got shape {x.shape}")
    if len(x) < min_rows:
        raise MetricInputError(f"{what}: needs at least {min_rows} samples, got {len(x)}")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=1).sum())
        raise MetricInputError(f"{what}: {bad} of {len(x)} rows contain NaN or infinite values")
    return x.astype(np.float64, copy=False)


def same_dim(a: np.ndarray, b: np.ndarray, what_a: str = "generated", what_b: str = "reference") -> None:
    if a.shape[1] != b.shape[1]:
        raise MetricInputError(f"feature dimensions differ: {what_a} has {a.shape[1]}, {what_b} has {b.shape[1]} "
                               f"(were they extracted with the same extractor?)")
