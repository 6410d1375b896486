"""Diversity and memorization measures used by the slight-corruption paper (Chen et al. 2024).

The paper does not define these in the material we could read (shared notes papers.md 5, 7), so
the literature versions are implemented; docs/metrics.md says which and why.

* Top-1% RMD: relative Mahalanobis distance (Ren et al. 2021) as used by Sehwag et al. 2022 to
  find low-density samples. Class-conditional Gaussians with a shared covariance and one
  class-agnostic Gaussian are fit on reference features; for a generated sample x of class y,
  RMD(x) = MD(x; mu_y, S) - MD(x; mu_0, S_0), with MD the squared Mahalanobis distance. The score
  is the mean of the top 1% RMD values: higher = more samples far from their class prototype.
* Sample entropy: Shannon entropy (nats) of the histogram of classes assigned to the generated
  samples (labels if given, else argmax of the extractor's logits); at most log(C).
* Memorization ratio: share of generated samples whose nearest reference (training) neighbour is
  closer than 1/3 of the second nearest (Yoon et al. 2023; Gu et al. 2023).
* Average pairwise L2: mean Euclidean distance between distinct generated samples.
* Nearest-training-image measures of the corruption paper (its App. B.7, on CLIP ViT-B/16 features):
  `nn_memorization`, the share of generated samples whose nearest training image lies closer than a
  distance threshold (0.12 there), and `top_k_l2`, the mean distance to the k = 5 nearest training
  images. Both on L2-normalised features (an assumption: the paper's threshold only makes sense on
  a fixed scale); `nn_threshold` derives a threshold for an extractor the paper did not use.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.metrics._checks import MetricInputError, as_features, same_dim


def _labels(labels, n: int, what: str) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise MetricInputError(f"{what}: expected {n} integer labels, got shape {y.shape} dtype {y.dtype}")
    return y.astype(np.int64)


def _pinv_psd(s: np.ndarray) -> np.ndarray:
    # Pseudo-inverse: reference sets smaller than the feature dimension give singular covariances.
    return np.linalg.pinv(s, hermitian=True)


def _sq_mahalanobis(x: np.ndarray, mu: np.ndarray, prec: np.ndarray) -> np.ndarray:
    d = x - mu
    return np.einsum("nd,de,ne->n", d, prec, d)


def relative_mahalanobis(gen, real, real_labels, gen_labels=None) -> np.ndarray:
    """Per-sample RMD of generated features against Gaussians fit on labelled reference features.
    Without gen_labels each sample takes the class with the smallest class-conditional distance."""
    g = as_features(gen, "generated")
    r = as_features(real, "reference")
    same_dim(g, r)
    yr = _labels(real_labels, len(r), "reference labels")
    classes = np.unique(yr)
    if len(classes) < 2:
        raise MetricInputError("RMD needs labelled reference features from at least two classes")
    means = np.stack([r[yr == c].mean(0) for c in classes])
    within = r - means[np.searchsorted(classes, yr)]
    prec_k = _pinv_psd(within.T @ within / max(len(r) - len(classes), 1))
    mu0 = r.mean(0)
    prec_0 = _pinv_psd(np.cov(r, rowvar=False))
    md0 = _sq_mahalanobis(g, mu0, prec_0)
    if gen_labels is None:
        mdk = np.stack([_sq_mahalanobis(g, m, prec_k) for m in means], 1).min(1)
    else:
        yg = _labels(gen_labels, len(g), "generated labels")
        unknown = np.setdiff1d(np.unique(yg), classes)
        if len(unknown):
            raise MetricInputError(f"generated labels {unknown.tolist()} have no reference samples")
        mdk = np.empty(len(g))
        for i, c in enumerate(classes):
            sel = yg == c
            mdk[sel] = _sq_mahalanobis(g[sel], means[i], prec_k)
    return mdk - md0


def top_rmd(gen, real, real_labels, gen_labels=None, top: float = 0.01) -> float:
    """Mean RMD of the top `top` fraction of generated samples (at least one sample)."""
    if not 0 < top <= 1:
        raise MetricInputError(f"top must be in (0, 1], got {top}")
    rmd = np.sort(relative_mahalanobis(gen, real, real_labels, gen_labels))[::-1]
    return float(rmd[: max(1, int(round(top * len(rmd))))].mean())


def class_entropy(labels=None, logits=None, num_classes: int | None = None) -> dict:
    """Entropy (nats) of the class histogram of generated samples, and its ratio to log(C)."""
    if labels is None:
        if logits is None:
            raise MetricInputError("entropy needs labels or logits")
        lg = as_features(logits, "logits", min_rows=1)
        labels, num_classes = lg.argmax(1), num_classes or lg.shape[1]
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) == 0 or not np.issubdtype(y.dtype, np.integer):
        raise MetricInputError(f"entropy: expected a non-empty 1-D integer label array, got {y.shape} {y.dtype}")
    if num_classes is not None and (y.min() < 0 or y.max() >= num_classes):
        raise MetricInputError(f"entropy: labels must lie in [0, {num_classes}), got [{y.min()}, {y.max()}]")
    _, counts = np.unique(y, return_counts=True)
    p = counts / len(y)
    h = float(-(p * np.log(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0
    c = num_classes or len(counts)
    return {"entropy": h, "normalized": float(h / np.log(c)) if c > 1 else 0.0, "num_classes": int(c)}


def _two_nearest(x: torch.Tensor, ref: torch.Tensor, block: int = 4096) -> torch.Tensor:
    return _k_nearest(x, ref, 2, block)


def _k_nearest(x: torch.Tensor, ref: torch.Tensor, k: int, block: int = 4096) -> torch.Tensor:
    return torch.cat([torch.cdist(x[i:i + block], ref).topk(k, dim=1, largest=False).values
                      for i in range(0, len(x), block)])


def nearest_train_distances(gen, train, k: int = 5, block: int = 4096) -> np.ndarray:
    """(N, k) distances from each generated sample to its k nearest training samples, ascending,
    on L2-normalised features (float64)."""
    g = as_features(gen, "generated", min_rows=1)
    t = as_features(train, "training", min_rows=k)
    same_dim(g, t, "generated", "training")
    unit = [torch.nn.functional.normalize(torch.from_numpy(a), dim=1) for a in (g, t)]
    return _k_nearest(*unit, k, block).numpy()


def nn_memorization(gen, train, threshold: float) -> float:
    """Share of generated samples whose nearest training sample is closer than `threshold`."""
    if threshold <= 0:
        raise MetricInputError(f"memorization threshold must be positive, got {threshold}")
    return float((nearest_train_distances(gen, train, k=1)[:, 0] < threshold).mean())


def top_k_l2(gen, train, k: int = 5) -> float:
    """Mean over generated samples of the mean distance to their k nearest training samples."""
    return float(nearest_train_distances(gen, train, k=k).mean())


def nn_threshold(held_out, train, quantile: float = 0.01) -> float:
    """A memorization threshold for an extractor without a published one: the `quantile` of the
    nearest-training-sample distances of held-out real images (genuinely new images fall below it
    that often, so a generated sample below it is as close to a training image as almost no new
    image is)."""
    if not 0 < quantile < 1:
        raise MetricInputError(f"quantile must be in (0, 1), got {quantile}")
    return float(np.quantile(nearest_train_distances(held_out, train, k=1)[:, 0], quantile))


def memorization_ratio(gen, train, threshold: float = 1 / 3, block: int = 4096) -> float:
    g = as_features(gen, "generated", min_rows=1)
    t = as_features(train, "training", min_rows=2)
    same_dim(g, t, "generated", "training")
    d = _two_nearest(torch.from_numpy(g), torch.from_numpy(t), block).numpy()
    # d2 == 0 means an exact duplicate of two training points: count it as memorized.
    ratio = np.divide(d[:, 0], d[:, 1], out=np.zeros(len(d)), where=d[:, 1] > 0)
    return float((ratio < threshold).mean())


def average_pairwise_l2(features, max_samples: int | None = 5000, seed: int = 0) -> float:
    """Mean L2 distance over distinct pairs; a seeded subset of max_samples rows keeps it O(m^2)."""
    x = as_features(features, "features")
    if max_samples is not None and len(x) > max_samples:
        x = x[np.random.default_rng(seed).choice(len(x), max_samples, replace=False)]
    t = torch.from_numpy(x)
    total = sum(float(torch.cdist(t[i:i + 2048], t).sum()) for i in range(0, len(t), 2048))
    return total / (len(t) * (len(t) - 1))
