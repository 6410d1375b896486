"""Feature cache keyed by image content, extractor and preprocessing (never by a user-chosen
name, which is how torch-fidelity's cache serves stale features)."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import torch

from bench.features.base import Extractor, Features
from bench.paths import cache_dir
from bench.spec import canonical_hash


def images_sha256(images) -> str:
    arr = images.numpy() if torch.is_tensor(images) else np.asarray(images)
    h = hashlib.sha256(str(arr.shape).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def cached_features(extractor: Extractor, images, desc: str = "features") -> tuple[Features, bool]:
    """Features of `images`, and whether they came from the cache."""
    key = canonical_hash({"images": images_sha256(images), "extractor": extractor.preprocessing()}, 24)
    path = cache_dir() / "features" / f"{key}.npz"
    if path.exists():
        with np.load(path) as z:
            return Features(z["features"], z["logits"] if "logits" in z.files else None), True
    feats = extractor(images, desc=desc)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    arrays = {"features": feats.features} | ({"logits": feats.logits} if feats.logits is not None else {})
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return feats, False
