"""The one in-memory form of every dataset, hub or synthetic.

Both profiles end as uint8 images (N, H, W, 3) plus int64 labels, so the trainer and the metrics
never know which profile they run; `sha256` is what results record as the training data's identity.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class ImageSet:
    images: np.ndarray  # uint8 (N, H, W, 3)
    labels: np.ndarray  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def sha256(self) -> str:
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.images).tobytes())
        h.update(np.ascontiguousarray(self.labels).astype(np.int64).tobytes())
        return h.hexdigest()

    def tensor(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """Images as float in [-1, 1], NCHW."""
        arr = self.images if index is None else self.images[index.numpy()]
        return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
