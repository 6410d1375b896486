"""Improved precision and recall (Kynkäänniemi et al. 2019), k = 3 by default.

Each set's manifold is the union of balls around its samples with radius = distance to the k-th
nearest neighbour in the same set. Precision = share of generated samples inside the reference
manifold; recall = share of reference samples inside the generated manifold. Distances are
Euclidean in float64, computed in blocks so memory stays O(block x N).
"""

from __future__ import annotations

import torch

from bench.metrics._checks import MetricInputError, as_features, same_dim


def _dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a, b)


def kth_neighbour_radius(x: torch.Tensor, k: int, block: int = 4096) -> torch.Tensor:
    """Distance of each row to its k-th nearest other row (the row itself is the 0-th)."""
    return torch.cat([_dist(x[i:i + block], x).kthvalue(k + 1, dim=1).values for i in range(0, len(x), block)])


def _coverage(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, block: int) -> float:
    inside = [(_dist(points[i:i + block], centres) <= radii[None, :]).any(1) for i in range(0, len(points), block)]
    return float(torch.cat(inside).double().mean())


def precision_recall(gen, real, k: int = 3, block: int = 4096) -> dict:
    g = as_features(gen, "generated")
    r = as_features(real, "reference")
    same_dim(g, r)
    if min(len(g), len(r)) <= k:
        raise MetricInputError(f"precision/recall with k={k} needs more than {k} samples per set, got "
                               f"{len(g)} generated and {len(r)} reference")
    gt, rt = torch.from_numpy(g), torch.from_numpy(r)
    r_gen, r_real = kth_neighbour_radius(gt, k, block), kth_neighbour_radius(rt, k, block)
    precision = _coverage(gt, rt, r_real, block)
    recall = _coverage(rt, gt, r_gen, block)
    f = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"precision": precision, "recall": recall, "f_score": f, "k": k}
