"""The tiny profile's feature extractor: a small CNN classifier trained by the project
(`bench build-tiny extractor`) on the tiny source domain and the eight tiny target datasets.
Its penultimate layer (64-d) plays the role of Inception's pool3 features, its logits the role
of Inception's for the Inception Score."""

from __future__ import annotations

import torch
from safetensors.torch import load_file
from torch import nn

from bench.errors import BenchError
from bench.features.base import Extractor
from bench.paths import ASSETS_DIR

WEIGHTS = ASSETS_DIR / "tiny" / "extractor.safetensors"


def pinned_sha256() -> str:
    """The sha256 the committed manifest (`extractor.json`, written by `bench build-tiny extractor`)
    pins the suite's extractor weights to."""
    import json

    manifest = WEIGHTS.with_suffix(".json")
    try:
        return json.loads(manifest.read_text())["sha256"]
    except (OSError, ValueError, KeyError) as err:
        raise BenchError(f"tiny extractor manifest {manifest} is missing or unreadable ({type(err).__name__}); "
                         f"restore it from git or rebuild with `bench build-tiny extractor`") from None


class TinyCNN(nn.Module):
    def __init__(self, num_classes: int, dim: int = 64):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU())

        self.body = nn.Sequential(block(3, 32), block(32, 32), nn.AvgPool2d(2), block(32, 64), block(64, 64),
                                  nn.AvgPool2d(2), block(64, dim), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        f = self.body(x)
        return f, self.head(f)


class TinyExtractor(Extractor):
    name = "tiny"
    input_size = 16
    resize = "bilinear-antialias"
    dim = 64

    def __init__(self, weights_path=None, expected_sha256: str | None = None):
        """The suite's weights (WEIGHTS) are checked against the sha256 pinned in their committed
        manifest (extractor.json beside them), like every tiny evaluation asset: a changed file
        would move every FID under the same run identity. Weights given by path (`bench score
        --weights`) are checked against `expected_sha256` when given; either way their sha256 is
        in `preprocessing()`, so results record it (provenance.extractors) and the feature cache
        is keyed by it."""
        from pathlib import Path

        from bench.features.weights import tiny_asset

        path = Path(weights_path) if weights_path else WEIGHTS
        if expected_sha256 is None and path == WEIGHTS:
            expected_sha256 = pinned_sha256()
        self.weights_sha256 = tiny_asset(path, expected_sha256, "tiny extractor", "extractor")
        state = load_file(path)
        self.net = TinyCNN(state["head.weight"].shape[0], self.dim)
        self.net.load_state_dict(state)
        self.net.eval()

    @staticmethod
    def prepare(images_uint8: torch.Tensor, size: int) -> torch.Tensor:
        x = images_uint8.permute(0, 3, 1, 2).float().div(127.5).sub(1)
        if x.shape[-1] != size:
            x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return x

    def preprocessing(self) -> dict:
        return super().preprocessing() | {"spatial": "body[:6][:, :7] (4x4x7)"}

    def forward(self, images):
        x = self.prepare(images, self.input_size)
        # Spatial features for sFID, the tiny analogue of Inception's mixed_6/conv[:7]: the first
        # 7 channels of the 4x4 map before the last block.
        mid = self.net.body[:6](x)
        feats = self.net.body[6:](mid)
        return feats, self.net.head(feats), mid[:, :7].permute(0, 2, 3, 1).flatten(1)
