"""The one in-memory form of every dataset, hub or synthetic.

Both profiles end as uint8 images (N, H, W, 3) plus int64 labels, so the trainer and the metrics
never know which profile they run; `sha256` is what results record as the training data's identity.
A hub split's images are a read-only memory map of its cache file (bench/data/hub_datasets.py), so
everything here reads them in pieces: a batch's rows, the hash over chunks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch


CHUNK_BYTES = 64 << 20


def update_in_chunks(h, images: np.ndarray) -> None:
    """Feed an array's bytes (C order) to a hash a few rows at a time: the same digest as hashing
    `tobytes()`, without a copy of the whole array (a memory-mapped split is never read in full)."""
    if images.ndim == 0 or len(images) == 0:
        h.update(np.ascontiguousarray(images).tobytes())
        return
    rows = max(1, CHUNK_BYTES // max(1, images[0].nbytes))
    for start in range(0, len(images), rows):
        h.update(np.ascontiguousarray(images[start : start + rows]).data)


@dataclass
class ImageSet:
    images: np.ndarray  # uint8 (N, H, W, 3)
    labels: np.ndarray  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def sha256(self) -> str:
        h = hashlib.sha256()
        update_in_chunks(h, self.images)
        h.update(np.ascontiguousarray(self.labels).astype(np.int64).tobytes())
        return h.hexdigest()

    def tensor(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """Images as float in [-1, 1], NCHW."""
        arr = self.images if index is None else self.images[index.numpy()]
        return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
