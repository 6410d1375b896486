"""The extractor interface: uint8 NHWC images in, float features (and optional logits) out.

Each extractor declares what it expects and produces (`input_size`, `resize`, `input_range`,
`dim`) and the sha256 of its weights; `preprocessing()` gathers everything that changes features
and keys the feature cache.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from bench.errors import BenchError
from bench.progress import progress


@dataclass
class Features:
    features: np.ndarray              # (N, D) float32, for FID / KID / precision-recall
    logits: np.ndarray | None         # (N, C), for the Inception Score and class entropy
    spatial: np.ndarray | None = None  # (N, S) spatial features, for sFID
    labels: np.ndarray | None = None  # (N,) class labels when known (RMD, entropy)

    def __len__(self) -> int:
        return len(self.features)


class Extractor:
    name: str = ""
    input_size: int = 0          # images are resized to this square size
    resize: str = "none"         # how: none | bilinear | pil-bicubic | ...
    input_range: str = "uint8 [0, 255] NHWC RGB"
    dim: int = 0
    weights_sha256: str = ""
    batch_size: int = 256
    device: str = "cpu"

    def preprocessing(self) -> dict:
        """Everything that changes features besides the weights; part of every cache key."""
        return {"name": self.name, "input_size": self.input_size, "resize": self.resize,
                "weights": self.weights_sha256}

    def forward(self, images: torch.Tensor) -> tuple:
        """(features, logits or None[, spatial]) for a uint8 NHWC batch."""
        raise NotImplementedError

    @staticmethod
    def check_images(images) -> torch.Tensor:
        with warnings.catch_warnings():
            # A memory-mapped reference split is read-only; shared, not copied: batches are read
            # from it one at a time (extractors never write their input).
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise BenchError(f"feature extractors expect uint8 RGB images shaped (N, H, W, 3), got "
                             f"{tuple(images.shape)} {images.dtype}")
        if len(images) == 0:
            raise BenchError("no images to extract features from")
        return images

    @torch.no_grad()
    def __call__(self, images: torch.Tensor | np.ndarray, desc: str = "features") -> Features:
        images = self.check_images(images)
        parts: list[list[torch.Tensor]] = [[], [], []]
        for start in progress(range(0, len(images), self.batch_size), desc=desc, leave=False, unit="batch"):
            out = self.forward(images[start : start + self.batch_size].to(self.device))
            for i, t in enumerate(out):
                if t is not None:
                    parts[i].append(t.float().cpu())
        feats, logits, spatial = (torch.cat(p).numpy() if p else None for p in parts)
        if not np.isfinite(feats).all():
            raise BenchError(f"{self.name} extractor produced NaN or infinite features (broken weights?)")
        return Features(feats, logits, spatial)
