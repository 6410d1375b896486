"""Feature extractors, by name. Each declares its input size, resize method and output dimension,
and a content hash of its weights, which keys the feature cache."""

from __future__ import annotations

from bench.errors import unknown
from bench.features.base import Extractor

EXTRACTORS: dict[str, str] = {
    "tiny": "bench.features.tiny:TinyExtractor",
}


def get_extractor(name: str, **kwargs) -> Extractor:
    import importlib

    if name not in EXTRACTORS:
        raise unknown("feature extractor", name, EXTRACTORS)
    module, attr = EXTRACTORS[name].split(":")
    return getattr(importlib.import_module(module), attr)(**kwargs)
