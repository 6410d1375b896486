"""CLIP image embeddings (open_clip) for CMMD: ViT-L/14@336 with OpenAI weights by default,
bicubic antialiased resize to the model's input size, CLIP normalisation, L2-normalised
embeddings (the CMMD paper's choices; torch-fidelity's CLIP features are not normalised).

Weights: `weights_path` / BENCH_CLIP_WEIGHTS (an open_clip checkpoint file), else open_clip's
own download of the pretrained tag into the Hugging Face cache (refused when offline)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.errors import BenchError
from bench.features.base import Extractor
from bench.features.weights import verify

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipExtractor(Extractor):
    name = "clip"
    env_var = "BENCH_CLIP_WEIGHTS"
    resize = "torch bicubic antialias (CMMD)"
    batch_size = 32

    def __init__(self, model_name: str = "ViT-L-14-336", pretrained: str = "openai", weights_path=None,
                 expected_sha256: str | None = None, device: str | None = None):
        import open_clip

        path = weights_path or os.environ.get(self.env_var)
        if not path:
            cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
            if not cfg:
                raise BenchError(f"open_clip has no pretrained weights {pretrained!r} for {model_name!r}")
            try:
                path = open_clip.download_pretrained(cfg)
            except Exception as exc:
                raise BenchError(f"could not get CLIP weights {model_name}/{pretrained} ({type(exc).__name__}); "
                                 f"offline? pass {self.env_var}=/path/to/open_clip_checkpoint") from None
        self.weights_sha256 = verify(Path(path), expected_sha256 or "", "CLIP")
        try:
            self.model = open_clip.create_model(model_name, pretrained=str(path), device="cpu")
        except RuntimeError as exc:
            raise BenchError(f"{path} does not match CLIP {model_name}: {str(exc).splitlines()[0]}") from None
        self.model.eval()
        self.model_name = model_name
        size = self.model.visual.image_size
        self.input_size = size[0] if isinstance(size, (tuple, list)) else int(size)
        self.dim = int(self.model.visual.output_dim)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device)

    def preprocessing(self) -> dict:
        return super().preprocessing() | {"model": self.model_name, "normalise": "clip", "l2_normalised": True}

    def forward(self, images):
        x = images.permute(0, 3, 1, 2).float().div(255)
        x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bicubic", antialias=True,
                          align_corners=False).clamp(0, 1)
        mean = torch.tensor(CLIP_MEAN, device=x.device)[:, None, None]
        std = torch.tensor(CLIP_STD, device=x.device)[:, None, None]
        emb = self.model.encode_image((x - mean) / std)
        return F.normalize(emb.float(), dim=-1), None


class ClipB16Extractor(ClipExtractor):
    """CLIP ViT-B/16 (OpenAI weights): the feature space of the corruption paper's memorisation
    ratio and top-5 L2 (its App. B.7). Offline: BENCH_CLIP_B16_WEIGHTS=/path/to/checkpoint."""

    name = "clip-b16"
    env_var = "BENCH_CLIP_B16_WEIGHTS"

    def __init__(self, weights_path=None, expected_sha256: str | None = None, device: str | None = None):
        super().__init__("ViT-B-16", "openai", weights_path, expected_sha256, device)
