"""Feature extractors, by name. Each declares its input size, resize method, input range and
output dimension, and a content hash of its weights, which keys the feature cache.

    inception        torch-fidelity's FID Inception-v3 (TF1 bilinear resize)   2048-d, logits, spatial
    clean-inception  same network, clean-fid's PIL bicubic resize (cFID)       2048-d, logits, spatial
    clip             open_clip ViT-L/14@336, L2-normalised (CMMD)              768-d
    clip-b16         open_clip ViT-B/16, L2-normalised (memorisation measures)  512-d
    dinov2           timm DINOv2 ViT-L/14 CLS token (FD-DINOv2)                1024-d
    tiny             the tiny profile's CNN                                    64-d, logits, spatial
"""

from __future__ import annotations

from bench.errors import unknown
from bench.features.base import Extractor, Features

EXTRACTORS: dict[str, str] = {
    "tiny": "bench.features.tiny:TinyExtractor",
    "inception": "bench.features.inception:InceptionExtractor",
    "clean-inception": "bench.features.inception:CleanInceptionExtractor",
    "clip": "bench.features.clip:ClipExtractor",
    "clip-b16": "bench.features.clip:ClipB16Extractor",
    "dinov2": "bench.features.dinov2:Dinov2Extractor",
}



def get_extractor(name: str, **kwargs) -> Extractor:
    import importlib

    if name not in EXTRACTORS:
        raise unknown("feature extractor", name, EXTRACTORS)
    module, attr = EXTRACTORS[name].split(":")
    return getattr(importlib.import_module(module), attr)(**kwargs)


__all__ = ["EXTRACTORS", "Extractor", "Features", "get_extractor"]
