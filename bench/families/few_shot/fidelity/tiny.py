"""The tiny profile's subject-fidelity networks, trained here (`bench build-tiny fidelity`) on the
captioned layouts the tiny text-to-image source was pre-trained on (bench/data/layouts.py):

- TinyClip: a CNN image tower and a one-layer transformer text tower over the layouts' words plus
  "clean", "noisy", "photo", "of", trained contrastively (symmetric InfoNCE, learned temperature).
  Half of its images carry noisy patterns of random strength (Gaussian noise, salt and pepper,
  high-frequency stripes, colour blotches: what a corruption stage looks like) and are captioned
  "a noisy photo of <caption>", the others "a clean photo of <caption>". It gives CLIP-I and CLIP-T,
  and the CLIP-IQA analog: as CLIP-IQA with its antonym pair, softmax(100 x cosine) over "a clean
  photo" / "a noisy photo", probability of clean.
- TinyDino: a CNN trained self-supervised (SimCLR: two augmented views of a layout, NT-Xent), its
  pooled embedding standing in for DINO's CLS token.
- LPIPS analog: LPIPS's formula (channel-unit-normalised activations, squared difference, spatial
  mean, summed over layers) over TinyDino's three stages, with unit layer weights (no learned
  linear heads: there is no human-judgement data to fit them on).
"""

from __future__ import annotations

import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F

from bench.data.layouts import WORDS
from bench.errors import BenchError
from bench.families.few_shot.fidelity.base import SubjectFidelity
from bench.paths import ASSETS_DIR

WEIGHTS = ASSETS_DIR / "tiny" / "fidelity.safetensors"
VOCAB = ("<pad>",) + WORDS + ("clean", "noisy", "photo", "of")
MAX_WORDS = 24
IQA_PROMPTS = ("a clean photo", "a noisy photo")


def _stage(cin: int, cout: int, stride: int, convs: int) -> nn.Sequential:
    layers = []
    for i in range(convs):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, stride if i == 0 else 1, 1), nn.GroupNorm(8, cout),
                   nn.SiLU()]
    return nn.Sequential(*layers)


class ConvTower(nn.Module):
    """Three stages at 32, 16 and 8 px, pooled and projected to `dim`."""

    def __init__(self, dim: int = 64, widths=(16, 32, 64)):
        super().__init__()
        self.stages = nn.ModuleList([_stage(3, widths[0], 1, 1), _stage(widths[0], widths[1], 2, 2),
                                     _stage(widths[1], widths[2], 2, 2)])
        self.proj = nn.Linear(widths[2], dim)

    def features(self, x) -> list[torch.Tensor]:
        out = []
        for s in self.stages:
            x = s(x)
            out.append(x)
        return out

    def forward(self, x):
        return self.proj(self.features(x)[-1].mean((2, 3)))


class TextTower(nn.Module):
    def __init__(self, dim: int = 64):
        super().__init__()
        self.embed = nn.Embedding(len(VOCAB), dim, padding_idx=0)
        self.pos = nn.Parameter(torch.zeros(MAX_WORDS, dim))
        self.layer = nn.TransformerEncoderLayer(dim, 2, 2 * dim, dropout=0.0, batch_first=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, ids):
        pad = ids == 0
        h = self.layer(self.embed(ids) + self.pos[: ids.shape[1]], src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).float()
        return self.proj((h * keep).sum(1) / keep.sum(1).clamp_min(1))


class TinyClip(nn.Module):
    def __init__(self, dim: int = 64):
        super().__init__()
        self.image = ConvTower(dim)
        self.text = TextTower(dim)
        self.logit_scale = nn.Parameter(torch.tensor(2.3))  # log(10)

    def encode_image(self, x):
        return F.normalize(self.image(x), dim=-1)

    def encode_text(self, ids):
        return F.normalize(self.text(ids), dim=-1)


class TinyDino(nn.Module):
    def __init__(self, dim: int = 64):
        super().__init__()
        self.backbone = ConvTower(dim)
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))  # SimCLR projection

    def embed(self, x):
        return F.normalize(self.backbone(x), dim=-1)


def tokenize(texts: list[str]) -> torch.Tensor:
    index = {w: i for i, w in enumerate(VOCAB)}
    out = torch.zeros(len(texts), MAX_WORDS, dtype=torch.long)
    for i, t in enumerate(texts):
        words = t.split()
        bad = [w for w in words if w not in index]
        if bad:
            raise BenchError(f"text {t!r} has words outside the tiny CLIP's vocabulary: {bad}")
        out[i, : len(words[:MAX_WORDS])] = torch.tensor([index[w] for w in words[:MAX_WORDS]])
    return out


def to_input(images) -> torch.Tensor:
    """uint8 NHWC (tensor or array) -> float NCHW in [-1, 1] at 32 px."""
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    if x.shape[-1] != 32:
        x = F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    return x


def lpips_distance(net: ConvTower, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS's formula with unit layer weights over the tower's three stages."""
    total = 0.0
    for fa, fb in zip(net.features(a), net.features(b)):
        na = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        nb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        total = total + (na - nb).pow(2).sum(1).mean((1, 2))
    return total


class TinyFidelity(SubjectFidelity):
    def __init__(self, weights_sha256: str | None = None, state: dict | None = None):
        """From the committed weights (checked against `weights_sha256` when given), or from a
        freshly trained `state` (the build's own sanity checks)."""
        digest = None
        if state is None:
            from bench.features.weights import tiny_asset

            digest = tiny_asset(WEIGHTS, weights_sha256, "tiny fidelity", "fidelity")
            state = load_file(WEIGHTS)
        self.clip, self.dino_net = TinyClip(), TinyDino()
        self.clip.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("clip.")})
        self.dino_net.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("dino.")})
        self.clip.eval()
        self.dino_net.eval()
        self.clip.requires_grad_(False)  # measures only: nothing here ever trains
        self.dino_net.requires_grad_(False)
        self.weights_sha256 = digest
        self._iqa_text = self.clip.encode_text(tokenize(list(IQA_PROMPTS)))

    def dino(self, images):
        return self.dino_net.embed(to_input(images))

    def clip_image(self, images):
        return self.clip.encode_image(to_input(images))

    def clip_text(self, texts):
        return self.clip.encode_text(tokenize(texts))

    def lpips(self, a, b):
        return lpips_distance(self.dino_net.backbone, to_input(a), to_input(b))

    def iqa(self, images):
        sims = self.clip_image(images) @ self._iqa_text.T
        return (100 * sims).softmax(-1)[:, 0]

    def info(self) -> dict:
        net = {"weights": WEIGHTS.name, "sha256": self.weights_sha256, "input_size": 32,
               "resize": "bilinear antialias"}
        return {"name": "tiny",
                "dino": {"network": "TinyDino: SimCLR-trained CNN, pooled embedding (CLS analog)", **net},
                "clip_i": {"network": "TinyClip image tower (CNN, layout captions, InfoNCE)", **net},
                "clip_t": {"network": "TinyClip text tower (word vocabulary, one transformer layer)", **net},
                "lpips": {"network": "LPIPS formula over TinyDino's 3 stages, unit weights (no linear heads): "
                                     "channel-unit-normalised, squared difference summed over channels, "
                                     "spatial mean, summed over stages", **net},
                "clip_iqa": {"network": f"TinyClip, softmax(100 cos) over {list(IQA_PROMPTS)}, P(clean)", **net}}


# -- training (bench build-tiny fidelity) -----------------------------------------------------------

def corrupt(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Noisy patterns of random kind and strength on images in [-1, 1]."""
    n = len(x)
    kind = torch.randint(0, 4, (n,), generator=gen)
    s = torch.rand(n, 1, 1, 1, generator=gen)
    noise = torch.randn(x.shape, generator=gen) * (0.15 + 0.55 * s)
    salt = (torch.rand(x.shape[0], 1, *x.shape[2:], generator=gen) < 0.05 + 0.2 * s).float() \
        * (torch.randint(0, 2, (n, 1, *x.shape[2:]), generator=gen).float() * 2 - 1 - x)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    freq = 1.5 + 1.5 * torch.rand(n, 1, 1, 1, generator=gen)
    phase = torch.rand(n, 3, 1, 1, generator=gen) * 6.28
    stripes = torch.sin(freq * (xx + yy) + phase) * (0.3 + 0.5 * s)
    blot = F.interpolate(torch.randn(n, 3, 8, 8, generator=gen), size=(32, 32), mode="nearest") * (0.3 + 0.6 * s)
    add = torch.stack([noise, salt.expand_as(x), stripes.expand_as(x), blot], 0)[kind, torch.arange(n)]
    return (x + add).clamp(-1, 1)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """SimCLR's views: random resized crop (scale 0.4-1), flip, brightness/contrast/colour jitter."""
    n = len(x)
    scale = 0.63 + 0.37 * torch.rand(n, generator=gen)  # side of the crop: area 0.4-1
    shift = (1 - scale)[:, None] * (torch.rand(n, 2, generator=gen) * 2 - 1)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = scale * flip, scale, shift
    x = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False,
                      padding_mode="reflection")
    bright = (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.4
    contrast = 0.7 + 0.6 * torch.rand(n, 1, 1, 1, generator=gen)
    tint = (torch.rand(n, 3, 1, 1, generator=gen) - 0.5) * 0.2
    mean = x.mean((1, 2, 3), keepdim=True)
    return ((x - mean) * contrast + mean + bright + tint).clamp(-1, 1)


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    z = F.normalize(torch.cat([a, b]), dim=-1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    n = len(a)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, target)


def train_fidelity(layouts, steps: int, batch_size: int, lr: float, seed: int, log) -> tuple[dict, dict]:
    """Both networks on the same layouts; returns (state with clip./dino. prefixes, info)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    clip, dino = TinyClip(), TinyDino()
    images = to_input(layouts.images)
    captions = list(layouts.captions)
    opt = torch.optim.AdamW([*clip.parameters(), *dino.parameters()], lr=lr, weight_decay=1e-4)
    info = {}
    for step in range(steps):
        idx = torch.randint(0, len(images), (batch_size,), generator=gen)
        x = images[idx]
        noisy = torch.rand(batch_size, generator=gen) < 0.5
        x_c = torch.where(noisy[:, None, None, None], corrupt(x, gen), x)
        texts = [f"a {'noisy' if z else 'clean'} photo of {captions[i]}" for i, z in zip(idx.tolist(), noisy.tolist())]
        img, txt = clip.encode_image(x_c), clip.encode_text(tokenize(texts))
        logits = clip.logit_scale.exp().clamp(max=100) * img @ txt.T
        # Identical captions in one batch are both right: the target spreads over them.
        same = torch.tensor([[a == b for b in texts] for a in texts], dtype=torch.float)
        target = same / same.sum(1, keepdim=True)
        clip_loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        dino_loss = nt_xent(dino.head(dino.backbone(augment(x, gen))), dino.head(dino.backbone(augment(x, gen))))
        loss = clip_loss + dino_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 100 == 0 or step + 1 == steps:
            info = {"clip_loss": round(clip_loss.item(), 4), "dino_loss": round(dino_loss.item(), 4)}
            log(f"step {step + 1}/{steps} clip {info['clip_loss']:.3f} simclr {info['dino_loss']:.3f}")
    state = {**{f"clip.{k}": v for k, v in clip.state_dict().items()},
             **{f"dino.{k}": v for k, v in dino.state_dict().items()}}
    return state, info
