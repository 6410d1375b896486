"""One entry point from a task's dataset spec to an `ImageSet`, whichever source it names."""

from __future__ import annotations

import numpy as np

from bench.data.domains import GENERATORS
from bench.data.hub_datasets import hub
from bench.data.imageset import ImageSet
from bench.errors import unknown
from bench.spec import DatasetSpec, SyntheticDataset


SPLIT_STREAMS = {"train": 0, "eval": 1, "calibration": 2}


def synthetic(spec: SyntheticDataset, split: str, size: int, n: int | None = None) -> ImageSet:
    """A synthetic split. Train, eval and calibration draw from disjoint seed streams of the same
    distribution; the calibration split (issue 29: noise measured on pairs no reported number
    uses) has `n` images, default the eval split's size."""
    if spec.generator not in GENERATORS:
        raise unknown("synthetic generator", spec.generator, GENERATORS)
    if n is None:
        n = spec.num_train if split == "train" else spec.num_eval
    rng = np.random.default_rng([spec.seed, SPLIT_STREAMS[split]])
    images, labels = GENERATORS[spec.generator](n, rng, size)
    return ImageSet(images, labels.astype(np.int64))


def load_split(ds: DatasetSpec, split: str, size: int) -> ImageSet:
    if ds.synthetic is not None:
        return synthetic(ds.synthetic, split, size)
    return hub(ds.hub, split, size, ds.num_classes)
