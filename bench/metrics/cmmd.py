"""CMMD (Jayasumana et al., CVPR 2024): MMD^2 with a Gaussian RBF kernel (sigma = 10) between
CLIP ViT-L/14@336 embeddings (L2-normalised by the `clip` extractor), using the minimum-variance
(biased, V-statistic) estimator on the full sets, times 1000 — the reference implementation's
choices. Kernel sums are accumulated in blocks so memory stays O(block x N)."""

from __future__ import annotations

import torch

from bench.metrics._checks import as_features, same_dim


def _mean_kernel(a: torch.Tensor, b: torch.Tensor, gamma: float, block: int) -> float:
    total = 0.0
    for i in range(0, len(a), block):
        sq = torch.cdist(a[i:i + block], b).square_()
        total += float(torch.exp(-gamma * sq).sum())
    return total / (len(a) * len(b))


def cmmd(gen, real, sigma: float = 10.0, scale: float = 1000.0, block: int = 4096) -> float:
    g = as_features(gen, "generated")
    r = as_features(real, "reference")
    same_dim(g, r)
    gt, rt = torch.from_numpy(g), torch.from_numpy(r)
    gamma = 1.0 / (2 * sigma**2)
    return scale * (_mean_kernel(gt, gt, gamma, block) + _mean_kernel(rt, rt, gamma, block)
                    - 2 * _mean_kernel(gt, rt, gamma, block))
