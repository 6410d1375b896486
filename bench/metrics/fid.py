"""Fréchet distance between Gaussian fits of two feature sets.

Tr((S1 S2)^1/2) is computed as the sum of sqrt-eigenvalues of the symmetric PSD matrix
S1^1/2 S2 S1^1/2 (eigh, float64), never through scipy's sqrtm: no complex results, no eps
retries, about 4x faster at 2048 dims, and equal to sqrtm's value to ~1e-12 where sqrtm is well
conditioned (see shared notes, metrics.md section 3).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FeatureStats:
    mu: np.ndarray      # float64 (D,)
    sigma: np.ndarray   # float64 (D, D), unbiased (N-1) like np.cov
    n: int

    @property
    def dim(self) -> int:
        return self.mu.shape[0]


def _check(features: np.ndarray, what: str) -> np.ndarray:
    features = np.asarray(features)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"{what}: expected an (N, D) array with N >= 2, got shape {features.shape}")
    if not np.isfinite(features).all():
        raise ValueError(f"{what}: features contain NaN or infinite values")
    return features.astype(np.float64, copy=False)


def feature_stats(features: np.ndarray, what: str = "features") -> FeatureStats:
    f = _check(features, what)
    if len(f) < f.shape[1]:
        warnings.warn(f"{what}: {len(f)} samples < {f.shape[1]} feature dims; the covariance is "
                      f"rank-deficient and FID is strongly biased", stacklevel=2)
    mu = f.mean(0)
    centered = f - mu
    return FeatureStats(mu, centered.T @ centered / (len(f) - 1), len(f))


def _sqrtm_psd(sigma: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh(sigma)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    if a.dim != b.dim:
        raise ValueError(f"feature dimensions differ: {a.dim} vs {b.dim}")
    root = _sqrtm_psd(a.sigma)
    inner = root @ b.sigma @ root
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum()
    diff = a.mu - b.mu
    return float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2 * tr_covmean)


def fid_from_features(gen: np.ndarray, real: np.ndarray) -> float:
    return frechet_distance(feature_stats(gen, "generated"), feature_stats(real, "reference"))
