"""Fréchet distance between Gaussian fits of two feature sets (FID, cFID, sFID, FD-DINOv2).

FID = |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^1/2), all in float64.

Tr((S1 S2)^1/2) is never computed with scipy's sqrtm (complex results, eps retries, removed
`disp` argument in scipy 1.18, ~4x slower; shared notes metrics.md section 3). Instead:

* from statistics: with any factor S1 = L L^T (Cholesky, or the eigen-factor when S1 is
  singular), the eigenvalues of the symmetric PSD matrix L^T S2 L are those of S1 S2, so the
  trace is sum(sqrt(eigvalsh(L^T S2 L))). One Cholesky, two matmuls and one eigenvalue-only
  decomposition: several times faster than sqrtm, and never complex.
* from features with fewer samples than dimensions (rank-deficient covariances, where sqrtm
  and eigenvalue routes both amplify round-off): with centred features X1, X2,
  S1 S2 = X1^T X1 X2^T X2 / ((n1-1)(n2-1)) has the same non-zero eigenvalues as
  (X1 X2^T)^T (X1 X2^T) / (...), so the trace is the nuclear norm of X1 X2^T / sqrt((n1-1)(n2-1)),
  an exact n1 x n2 SVD.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from bench.metrics._checks import MetricInputError, as_features, same_dim


@dataclass(frozen=True)
class FeatureStats:
    mu: np.ndarray      # float64 (D,)
    sigma: np.ndarray   # float64 (D, D), unbiased (N-1) like np.cov
    n: int
    rank: int = field(default=-1, compare=False)   # numerical rank of sigma, -1 if not computed

    @property
    def dim(self) -> int:
        return self.mu.shape[0]

    def save(self, path) -> None:
        np.savez(path, mu=self.mu, sigma=self.sigma, n=self.n, rank=self.rank)

    @classmethod
    def load(cls, path) -> "FeatureStats":
        with np.load(path) as z:
            if "mu" not in z.files or "sigma" not in z.files:
                raise MetricInputError(f"{path}: not a statistics file (needs arrays 'mu' and 'sigma')")
            mu, sigma = np.asarray(z["mu"], np.float64), np.asarray(z["sigma"], np.float64)
            n = int(z["n"]) if "n" in z.files else -1
            rank = int(z["rank"]) if "rank" in z.files else -1
        if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
            raise MetricInputError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not match")
        if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
            raise MetricInputError(f"{path}: statistics contain NaN or infinite values")
        return cls(mu, sigma, n, rank)


def _warn_if_few(n: int, d: int, what: str) -> None:
    if n < d:
        warnings.warn(f"{what}: {n} samples < {d} feature dims; the covariance is rank-deficient and "
                      f"FID is strongly biased (use the same N for every compared model)", stacklevel=3)


def feature_stats(features, what: str = "features") -> FeatureStats:
    f = as_features(features, what)
    _warn_if_few(len(f), f.shape[1], what)
    mu = f.mean(0)
    centered = f - mu
    sigma = centered.T @ centered / (len(f) - 1)
    return FeatureStats(mu, sigma, len(f), int(np.linalg.matrix_rank(centered)) if len(f) < f.shape[1] else -1)


def _factor(sigma: np.ndarray) -> np.ndarray:
    """L with L @ L.T == sigma: Cholesky when sigma is positive definite, else the eigen-factor."""
    try:
        return np.linalg.cholesky(sigma)
    except np.linalg.LinAlgError:
        vals, vecs = np.linalg.eigh(sigma)
        tol = vals.max(initial=0.0) * len(vals) * np.finfo(np.float64).eps
        return vecs * np.sqrt(np.where(vals > tol, vals, 0.0))


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    """Tr((s1 s2)^1/2) for symmetric PSD s1, s2 (float64, never complex)."""
    lo = _factor(s1)
    inner = lo.T @ s2 @ lo
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sqrt(np.clip(eig, 0, None)).sum())


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    if a.dim != b.dim:
        raise MetricInputError(f"feature dimensions differ: {a.dim} vs {b.dim}")
    diff = a.mu - b.mu
    tr = trace_sqrt_product(a.sigma, b.sigma)
    return float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2 * tr)


def fid_from_features(gen, real) -> float:
    """FID of two (N, D) feature arrays. Uses the exact Gram (SVD) route when either set has fewer
    samples than dimensions, the covariance route otherwise."""
    g = as_features(gen, "generated")
    r = as_features(real, "reference")
    same_dim(g, r)
    d = g.shape[1]
    _warn_if_few(len(g), d, "generated")
    _warn_if_few(len(r), d, "reference")
    if min(len(g), len(r)) < d:
        gc, rc = g - g.mean(0), r - r.mean(0)
        scale = np.sqrt((len(g) - 1) * (len(r) - 1))
        tr = float(np.linalg.svd(gc @ rc.T / scale, compute_uv=False).sum())
        diff = g.mean(0) - r.mean(0)
        tr1 = float((gc * gc).sum() / (len(g) - 1))
        tr2 = float((rc * rc).sum() / (len(r) - 1))
        return float(diff @ diff + tr1 + tr2 - 2 * tr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # already warned above
        return frechet_distance(feature_stats(g, "generated"), feature_stats(r, "reference"))
