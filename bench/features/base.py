"""The extractor interface: uint8 NHWC images in, float features (and optional logits) out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm


@dataclass
class Features:
    features: np.ndarray          # (N, D) float32, for FID / KID / precision-recall
    logits: np.ndarray | None     # (N, C), for the Inception Score


class Extractor:
    name: str = ""
    input_size: int = 0          # images are resized to this square size
    resize: str = "none"         # how: none | bilinear | pil-bicubic | ...
    dim: int = 0
    weights_sha256: str = ""
    batch_size: int = 256

    def preprocessing(self) -> dict:
        """Everything that changes features besides the weights; part of every cache key."""
        return {"name": self.name, "input_size": self.input_size, "resize": self.resize,
                "weights": self.weights_sha256}

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, images: torch.Tensor | np.ndarray, desc: str = "features") -> Features:
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"{self.name} extractor expects uint8 images (N, H, W, 3), got "
                             f"{tuple(images.shape)} {images.dtype}")
        feats, logits = [], []
        for start in tqdm(range(0, len(images), self.batch_size), desc=desc, leave=False, unit="batch"):
            f, lg = self.forward(images[start : start + self.batch_size])
            feats.append(f.float().cpu())
            if lg is not None:
                logits.append(lg.float().cpu())
        return Features(torch.cat(feats).numpy(), torch.cat(logits).numpy() if logits else None)
