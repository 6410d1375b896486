"""Metrics computed from features. A public API: users can score their own features.

    from bench.metrics import fid_from_features, kid
    fid_from_features(gen_feats, real_feats)
"""

from bench.metrics.fid import FeatureStats, feature_stats, frechet_distance, fid_from_features
from bench.metrics.kid import kid

__all__ = ["FeatureStats", "feature_stats", "frechet_distance", "fid_from_features", "kid"]
