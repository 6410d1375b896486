"""The paper profile's subject-fidelity networks, as the official eval_updated_v2.py uses them:

    dino      facebook/dino-vits16 CLS token (last hidden state after the final LayerNorm). Loaded
              with timm as `vit_small_patch16_224.dino` (the same weights, repo timm/...) or, when
              only the official repo is cached, with transformers' ViTModel as the eval does.
              Input: 224 px, bilinear (ViTImageProcessor), ImageNet normalisation.
    clip_i/t  CLIP ViT-L/14 with OpenAI weights (open_clip `ViT-L-14`/`openai`, the weights of
              openai/clip-vit-large-patch14), 224 px bicubic, CLIP normalisation.
    lpips     the `lpips` package, net="alex" (torchvision's ImageNet AlexNet + LPIPS v0.1 linear
              heads shipped with the package), both images resized to 512 x 512 and scaled to
              [-1, 1], as the eval's Resize((512, 512)) + Normalize(0.5, 0.5).
    clip_iqa  piq.CLIPIQA(data_range=1.0) on [0, 1] images at their own size (its RN50 CLIP and
              pre-tokenised "Good photo." / "Bad photo.").

Everything comes from local caches, nothing is downloaded here: `check()` (run by the constructor)
raises ONE BenchError line naming every missing weight file or package and how to get it, without
importing the networks. lpips, piq and timm are imported only when the scorer is built.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.backbone import file_sha256
from bench.errors import PAPER_EXTRA_INSTALL, BenchError
from bench.families.few_shot.fidelity.base import SubjectFidelity

DINO_TIMM = "vit_small_patch16_224.dino"         # repo timm/vit_small_patch16_224.dino
DINO_HF = "facebook/dino-vits16"                  # the official eval's copy (transformers ViTModel)
CLIP = ("ViT-L-14", "openai")
CLIP_HF = "timm/vit_large_patch14_clip_224.openai"  # open_clip's hf_hub for ViT-L-14/openai
CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
ALEXNET = "alexnet-owt-7be5be79.pth"              # torchvision's AlexNet (LPIPS's backbone), torch hub cache
PIQ_FILES = ("RN50.pt", "clipiqa_tokens.pt")      # what piq.CLIPIQA fetches into ~/.cache/clip
PACKAGES = ("lpips", "piq", "timm", "open_clip")  # imported by the scorer; all in the extra `paper`
LPIPS_SIZE = 512
CHUNK = 16


def _hf_cache() -> Path:
    """The Hugging Face hub cache, read from the environment now (as huggingface_hub resolves it)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def _cached(repo: str, *files: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    for f in files:
        try:
            hit = try_to_load_from_cache(repo, f, cache_dir=str(_hf_cache()))
        except Exception:  # a malformed cache counts as missing
            hit = None
        if isinstance(hit, str):
            return Path(hit)
    return None


def _torch_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _piq_dir() -> Path:
    return Path(os.path.expanduser("~/.cache/clip"))  # hard-coded in piq 0.8.0


def locate() -> tuple[dict[str, Path], list[str]]:
    """({what: local file}, [each missing thing with how to get it]); reads caches only."""
    found: dict[str, Path] = {}
    gone: list[str] = []
    lacking = [module for module in PACKAGES if importlib.util.find_spec(module) is None]
    if lacking:
        gone.append(f"python package(s) {', '.join(lacking)} (the paper profiles' extra: `{PAPER_EXTRA_INSTALL}`)")

    dino = os.environ.get("BENCH_DINO_WEIGHTS")
    if dino:
        if Path(dino).expanduser().is_file():
            found["dino_timm"] = Path(dino).expanduser()
        else:
            gone.append(f"DINO ViT-S/16: BENCH_DINO_WEIGHTS={dino} is not a file")
    elif (hit := _cached("timm/" + DINO_TIMM, "model.safetensors", "pytorch_model.bin")) is not None:
        found["dino_timm"] = hit
    elif (importlib.util.find_spec("transformers") is not None and _cached(DINO_HF, "config.json") is not None
          and (hit := _cached(DINO_HF, "model.safetensors", "pytorch_model.bin")) is not None):
        found["dino_hf"] = hit
    else:
        gone.append(f"DINO ViT-S/16 (`hf download timm/{DINO_TIMM}` or `hf download {DINO_HF}`, "
                    f"or BENCH_DINO_WEIGHTS=<timm state dict>)")

    clip = os.environ.get("BENCH_CLIP_WEIGHTS")
    if clip:
        if Path(clip).expanduser().is_file():
            found["clip"] = Path(clip).expanduser()
        else:
            gone.append(f"CLIP {CLIP[0]}/{CLIP[1]}: BENCH_CLIP_WEIGHTS={clip} is not a file")
    elif (hit := _cached(CLIP_HF, *CLIP_FILES)) is not None:
        found["clip"] = hit
    else:
        gone.append(f"CLIP {CLIP[0]}/{CLIP[1]} (`hf download {CLIP_HF}` or BENCH_CLIP_WEIGHTS=<open_clip checkpoint>)")

    alex = _torch_checkpoints() / ALEXNET
    if alex.is_file():
        found["alexnet"] = alex
    else:
        gone.append(f"LPIPS's AlexNet {alex} (`python -c \"import torchvision; "
                    f"torchvision.models.alexnet(weights='IMAGENET1K_V1')\"`)")

    lacking = [f for f in PIQ_FILES if not (_piq_dir() / f).is_file()]
    if lacking:
        gone.append(f"CLIP-IQA's {' and '.join(lacking)} in {_piq_dir()} (`python -c \"import piq; piq.CLIPIQA()\"` "
                    f"online, or copy them there)")
    else:
        found.update({f: _piq_dir() / f for f in PIQ_FILES})
    return found, gone


def check() -> dict[str, Path]:
    """The local weight files, or one BenchError line naming everything missing."""
    found, gone = locate()
    if gone:
        raise BenchError("paper subject-fidelity networks are not available offline; missing: " + "; ".join(gone))
    return found


class PaperFidelity(SubjectFidelity):
    def __init__(self, device: str | None = None):
        files = check()
        import lpips
        import open_clip
        import piq

        from bench.features.clip import ClipExtractor

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if "dino_timm" in files:
            import timm

            self._dino = timm.create_model(DINO_TIMM, pretrained=True, num_classes=0,
                                           pretrained_cfg_overlay={"file": str(files["dino_timm"])})
            self._dino_kind, dino_file = f"timm {DINO_TIMM} (CLS token, global_pool='token')", files["dino_timm"]
        else:
            from transformers import ViTModel

            self._dino = ViTModel.from_pretrained(str(files["dino_hf"].parent), add_pooling_layer=False)
            self._dino_kind, dino_file = f"transformers ViTModel {DINO_HF} (last_hidden_state[:, 0])", files["dino_hf"]
        self._dino.eval().to(self.device)
        self._clip = ClipExtractor(*CLIP, weights_path=str(files["clip"]), device=self.device)
        self._tokenizer = open_clip.get_tokenizer(CLIP[0])
        self._lpips = lpips.LPIPS(net="alex", verbose=False).eval().to(self.device)
        self._iqa = piq.CLIPIQA(data_range=1.0).eval().to(self.device)
        lin = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
        self._sha = {"dino": file_sha256(dino_file), "clip": self._clip.weights_sha256,
                     "lpips_alexnet": file_sha256(files["alexnet"]), "lpips_linear": file_sha256(lin),
                     **{f"clip_iqa_{f}": file_sha256(files[f]) for f in PIQ_FILES}}

    def _float(self, images) -> torch.Tensor:
        return torch.as_tensor(images).permute(0, 3, 1, 2).float().div(255).to(self.device)

    def _chunks(self, fn, *batches) -> torch.Tensor:
        return torch.cat([fn(*(b[i:i + CHUNK] for b in batches)).float().cpu()
                          for i in range(0, len(batches[0]), CHUNK)])

    def _dino_chunk(self, images):
        x = F.interpolate(self._float(images), size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
        mean = torch.tensor((0.485, 0.456, 0.406), device=self.device)[:, None, None]
        std = torch.tensor((0.229, 0.224, 0.225), device=self.device)[:, None, None]
        x = (x.clamp(0, 1) - mean) / std
        out = self._dino(x) if "timm" in self._dino_kind else self._dino(pixel_values=x).last_hidden_state[:, 0]
        return F.normalize(out.float(), dim=-1)

    def dino(self, images):
        return self._chunks(self._dino_chunk, images)

    def clip_image(self, images):
        return torch.as_tensor(self._clip(torch.as_tensor(images), desc="clip").features).float()

    def clip_text(self, texts):
        tokens = self._tokenizer(texts).to(self.device)
        return F.normalize(self._clip.model.encode_text(tokens).float(), dim=-1).cpu()

    def _lpips_chunk(self, a, b):
        def prep(x):
            x = F.interpolate(self._float(x), size=(LPIPS_SIZE, LPIPS_SIZE), mode="bilinear", antialias=True,
                              align_corners=False)
            return x.clamp(0, 1) * 2 - 1
        return self._lpips(prep(a), prep(b)).flatten()

    def lpips(self, a, b):
        return self._chunks(self._lpips_chunk, a, b)

    def iqa(self, images):
        return self._chunks(lambda x: self._iqa(self._float(x)).flatten(), images)

    def info(self) -> dict:
        return {"name": "paper",
                "dino": {"network": self._dino_kind, "sha256": self._sha["dino"], "input_size": 224,
                         "resize": "bilinear antialias", "normalise": "imagenet"},
                "clip_i": {"network": f"open_clip {CLIP[0]}/{CLIP[1]} image tower", "sha256": self._sha["clip"],
                           "input_size": self._clip.input_size, "resize": "bicubic antialias"},
                "clip_t": {"network": f"open_clip {CLIP[0]}/{CLIP[1]} text tower", "sha256": self._sha["clip"]},
                "lpips": {"network": "lpips 0.1.4 LPIPS(net='alex'), distance between same-prompt images",
                          "sha256": self._sha["lpips_alexnet"], "linear_heads_sha256": self._sha["lpips_linear"],
                          "input_size": LPIPS_SIZE, "resize": "bilinear antialias"},
                "clip_iqa": {"network": "piq 0.8.0 CLIPIQA(data_range=1.0), RN50",
                             "sha256": self._sha["clip_iqa_RN50.pt"],
                             "tokens_sha256": self._sha["clip_iqa_clipiqa_tokens.pt"], "input_size": "native"}}
