"""Datasets: hub datasets (paper profile) and deterministic procedural stand-ins (tiny profile).

Both end as an `ImageSet` of uint8 images (N, H, W, 3) and int64 labels, so the trainer and the
metrics never know which profile they run. A package rather than one module so that a new
procedural domain is one short file in `domains/`; this module keeps the old `bench.data` API.
"""

from bench.data.domains import GENERATORS
from bench.data.hub_datasets import center_crop_resize, hub
from bench.data.imageset import ImageSet
from bench.data.load import load_split, synthetic

__all__ = ["GENERATORS", "ImageSet", "center_crop_resize", "hub", "load_split", "synthetic"]
