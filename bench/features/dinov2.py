"""DINOv2 features for FD-DINOv2 (Stein et al. 2023): ViT-L/14 by default, 224x224 bicubic
antialiased resize and ImageNet normalisation (dgm-eval's transform), the normalised CLS token.

The network is timm's DINOv2 port. Weights: `weights_path` / BENCH_DINOV2_WEIGHTS (a timm or
original DINOv2 checkpoint; the position embedding is resampled to 224), else timm's download
into the Hugging Face cache (refused when offline)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.errors import BenchError
from bench.features.base import Extractor
from bench.features.weights import verify

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Dinov2Extractor(Extractor):
    name = "dinov2"
    input_size = 224
    resize = "torch bicubic antialias (dgm-eval)"
    batch_size = 32

    def __init__(self, arch: str = "vit_large_patch14_dinov2.lvd142m", weights_path=None,
                 expected_sha256: str | None = None, device: str | None = None):
        import timm

        path = weights_path or os.environ.get("BENCH_DINOV2_WEIGHTS")
        overlay = {}
        if path:
            self.weights_sha256 = verify(Path(path), expected_sha256 or "", "DINOv2")
            overlay = {"file": str(path)}
        try:
            self.model = timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=overlay,
                                           img_size=self.input_size, num_classes=0)
        except RuntimeError as exc:
            raise BenchError(f"DINOv2 weights do not match {arch}: {str(exc).splitlines()[0]}") from None
        except Exception as exc:
            raise BenchError(f"could not get DINOv2 weights for {arch} ({type(exc).__name__}); offline? pass "
                             f"BENCH_DINOV2_WEIGHTS=/path/to/checkpoint") from None
        if not path:
            from bench.backbone import state_sha256

            self.weights_sha256 = state_sha256(self.model.state_dict())
        self.model.eval()
        self.arch = arch
        self.dim = int(self.model.num_features)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device)

    def preprocessing(self) -> dict:
        return super().preprocessing() | {"arch": self.arch, "normalise": "imagenet", "token": "cls"}

    def forward(self, images):
        x = images.permute(0, 3, 1, 2).float().div(255)
        x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bicubic", antialias=True,
                          align_corners=False).clamp(0, 1)
        mean = torch.tensor(IMAGENET_MEAN, device=x.device)[:, None, None]
        std = torch.tensor(IMAGENET_STD, device=x.device)[:, None, None]
        return self.model((x - mean) / std), None
