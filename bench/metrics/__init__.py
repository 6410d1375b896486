"""Metrics computed from features: a public API, so users can score their own features.

    from bench.metrics import fid_from_features, kid, inception_score, precision_recall
    fid_from_features(gen_feats, real_feats)          # (N, D) arrays, any float dtype
    kid(gen_feats, real_feats, subsets=100, subset_size=1000, seed=0)

Every function validates its input (shape, NaN, dimensions, sample counts) and raises
`MetricInputError` (a ValueError) with one clear message. See docs/metrics.md.
"""

from bench.metrics._checks import MetricInputError
from bench.metrics.ci import aggregate, compare, scalar_metrics, subsample_sd
from bench.metrics.cmmd import cmmd
from bench.metrics.diversity import (average_pairwise_l2, class_entropy, memorization_ratio, nearest_train_distances,
                                     nn_memorization, nn_threshold, relative_mahalanobis, top_k_l2, top_rmd)
from bench.metrics.ewc import diagonal_fisher, ewc, ewc_against_pretrained
from bench.metrics.fid import FeatureStats, feature_stats, fid_from_features, frechet_distance, trace_sqrt_product
from bench.metrics.inception_score import inception_score
from bench.metrics.kid import kid, mmd2_unbiased, poly_kernel, rbf_kernel
from bench.metrics.prc import precision_recall

__all__ = [
    "FeatureStats", "MetricInputError", "aggregate", "average_pairwise_l2", "class_entropy", "cmmd", "compare",
    "diagonal_fisher", "ewc", "ewc_against_pretrained", "feature_stats", "fid_from_features", "frechet_distance", "inception_score", "kid",
    "memorization_ratio", "mmd2_unbiased", "nearest_train_distances", "nn_memorization", "nn_threshold", "poly_kernel", "precision_recall", "rbf_kernel", "relative_mahalanobis",
    "scalar_metrics", "subsample_sd", "top_k_l2", "top_rmd", "trace_sqrt_product",
]
