"""Feature and statistics cache keyed by image content, extractor, weights hash and
preprocessing (never by a user-chosen name, which is how torch-fidelity's cache serves stale
features), in the project's cache folder (never site-packages, where clean-fid writes).

Nothing is written unless the features are finite; writes are atomic (temp file + rename).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from bench.errors import BenchError
from bench.atomic import atomic_write
from bench.features.base import Extractor, Features
from bench.paths import cache_dir
from bench.progress import phase
from bench.spec import canonical_hash


def images_sha256(images) -> str:
    """Of the shape and the bytes; hashed in chunks, so a memory-mapped reference split is never
    copied whole."""
    from bench.data.imageset import update_in_chunks

    arr = images.numpy() if torch.is_tensor(images) else np.asarray(images)
    h = hashlib.sha256(str(arr.shape).encode())
    update_in_chunks(h, arr)
    return h.hexdigest()


# Extractions of this many images or more get a line of their own: a reference split's or a final
# evaluation's take tens of seconds, and their bar may end within the log interval. Tracking's
# small sets, extracted every few steps, would only fill the log.
ANNOUNCE_FROM = 500


def features_key(extractor: Extractor, images_hash: str) -> str:
    return canonical_hash({"images": images_hash, "extractor": extractor.preprocessing()}, 24)


def _path(kind: str, key: str) -> Path:
    return cache_dir() / kind / f"{key}.npz"


def _atomic_savez(path: Path, arrays: dict) -> None:
    with atomic_write(path, suffix=".npz") as tmp:  # np.savez insists on the extension
        np.savez(tmp, **arrays)


def load_cached(extractor: Extractor, images_hash: str) -> Features | None:
    path = _path("features", features_key(extractor, images_hash))
    if not path.exists():
        return None
    with np.load(path) as z:
        get = (lambda k: z[k] if k in z.files else None)
        return Features(z["features"], get("logits"), get("spatial"))


def cached_features(extractor: Extractor, images, desc: str = "features") -> tuple[Features, bool]:
    """Features of `images`, and whether they came from the cache."""
    digest = images_sha256(images)
    hit = load_cached(extractor, digest)
    if hit is not None:
        return hit, True
    if len(images) >= ANNOUNCE_FROM:
        phase(f"{desc}: extracting {len(images)} images (cached for later runs)")
    feats = extractor(images, desc=desc)
    if not np.isfinite(feats.features).all():
        raise BenchError(f"{extractor.name} features contain NaN or infinite values; nothing cached")
    arrays = {k: v for k, v in (("features", feats.features), ("logits", feats.logits),
                                ("spatial", feats.spatial)) if v is not None}
    _atomic_savez(_path("features", features_key(extractor, digest)), arrays)
    return feats, False


def cached_stats(extractor: Extractor, images_hash: str, features: np.ndarray, layer: str = "features"):
    """FID statistics (float64) of features extracted from the images with this hash, cached."""
    from bench.metrics import FeatureStats, feature_stats

    key = canonical_hash({"images": images_hash, "extractor": extractor.preprocessing(), "layer": layer,
                          "n": len(features)}, 24)
    path = _path("stats", key)
    if path.exists():
        return FeatureStats.load(path), True
    stats = feature_stats(features, layer)
    with atomic_write(path, suffix=".npz") as tmp:
        stats.save(tmp)
    return stats, False
