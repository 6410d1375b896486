"""Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))), over `splits` splits.

Takes logits (N, C) and applies the softmax itself in float64, as torch-fidelity does (with the
unbiased Inception logits). The optional shuffle uses `np.random.RandomState(seed).permutation`,
torch-fidelity's order, so the same seed gives the same splits.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax, logsumexp

from bench.metrics._checks import MetricInputError, as_features


def inception_score(logits, splits: int = 10, shuffle: bool = True, seed: int = 2020) -> dict:
    x = as_features(logits, "logits")
    n = len(x)
    if splits < 1 or n < splits:
        raise MetricInputError(f"Inception Score with {splits} splits needs at least {splits} samples, got {n}")
    if shuffle:
        x = x[np.random.RandomState(seed).permutation(n)]
    log_p = log_softmax(x, axis=1)
    p = np.exp(log_p)
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        # log of the split's mean p(y), in log space: log(mean p) underflows to -inf for classes no
        # sample predicts, and 0 * inf would turn the score into NaN.
        log_py = logsumexp(log_p[lo:hi], axis=0, keepdims=True) - np.log(hi - lo)
        kl = (p[lo:hi] * (log_p[lo:hi] - log_py)).sum(1).mean()
        scores.append(float(np.exp(kl)))
    return {"mean": float(np.mean(scores)), "std": float(np.std(scores)), "splits": splits}
