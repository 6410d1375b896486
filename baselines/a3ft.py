"""A3FT, adapter-augmented attention fine-tuning (Moon, Choi, Lee, Ha, Lee, "Fine-tuning Diffusion
Models with Limited Data", 2022): the attention blocks train, plus a time-aware adapter inside
every attention block, "between the attention block and its successive linear layer" (Sec. 2.3).

Here z_in is the attention output before the output projection (diffusers' `to_out.0`, iDDPM's
`proj_out`), which is the FF of the paper's Eq. 3; a pre-hook replaces that projection's input:

    z_query = LN(W_f(z_in + W_t2 SiLU(W_t1 t_emb)))            time fusion, Eq. 1 and App. C.4
    z_out   = LN(W_o CrossAttn(z_query, z_in, z_in))            channel-wise, single head, Eq. 2
    alpha_t = sigmoid(W_s2 SiLU(W_s1 t_emb)) in [0, 1]^C        time scaling
    FF((1 - alpha_t) * z_in + alpha_t * z_out)                   Eq. 3

t_emb is the backbone's timestep embedding (its `time_embedding` group's output, what the residual
blocks receive), kept by a forward hook for the adapters of the same forward. Sharing as in App.
C.4: one time-fusion and one cross-attention module per attention width (384 and 512 on iDDPM
ImageNet-64), one time-scaling module per attention block.

Choices the paper leaves open (its code is not public), made to land on its parameter counts
(time fusion + cross attention ~1.7M, time scaling ~0.5M, total ~2.2M = 1.8%):
- "channel-wise" attention: the channels are the tokens and the spatial positions their features,
  a C x C map softmax(Q K^T / sqrt(HW)) with Q = z_query and K = V = z_in as the paper says (no
  input projections), then an output projection W_o before the LayerNorm.
- SiLU between the two time-embedding linears of the time fusion (without it they collapse to one).
- time-scaling hidden width 32 (`scaling_hidden`).
Initialisation: the paper does not say. An exact identity at init would need alpha_t = 0, which a
sigmoid never reaches, so the last time-scaling layer starts at weight 0 and bias logit(alpha_init)
(default 1e-3): every alpha_t starts at 1e-3 whatever t, the prepared model departs from the
pre-trained one by 1e-3 (z_out - z_in) before each output projection, and Adam's per-parameter
step still opens the gate at the learning rate's pace.
"""

import math

import torch
import torch.nn.functional as F
from pydantic import Field

from baselines._common import reference_tensor, train_only
from bench.method import Method, MethodConfig


class A3FTConfig(MethodConfig):
    scaling_hidden: int = Field(32, ge=1, description="hidden width of each time-scaling MLP")
    alpha_init: float = Field(1e-3, gt=0, lt=1, description="alpha_t at initialisation, for every t and channel")


def _linear(n_in: int, n_out: int, like: torch.Tensor) -> torch.nn.Linear:
    return torch.nn.Linear(n_in, n_out, device=like.device, dtype=like.dtype)


def _norm(dim: int, like: torch.Tensor) -> torch.nn.LayerNorm:
    return torch.nn.LayerNorm(dim, device=like.device, dtype=like.dtype)


class TimeFusion(torch.nn.Module):
    def __init__(self, dim: int, temb_dim: int, like: torch.Tensor):
        super().__init__()
        self.t1, self.t2, self.proj, self.norm = (_linear(temb_dim, dim, like), _linear(dim, dim, like),
                                                  _linear(dim, dim, like), _norm(dim, like))

    def forward(self, z: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:  # z: (B, HW, C)
        return self.norm(self.proj(z + self.t2(F.silu(self.t1(temb)))[:, None, :]))


class ChannelCrossAttention(torch.nn.Module):
    def __init__(self, dim: int, like: torch.Tensor):
        super().__init__()
        self.out, self.norm = _linear(dim, dim, like), _norm(dim, like)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:  # (B, HW, C) each
        weights = torch.softmax(q.transpose(1, 2) @ kv / math.sqrt(q.shape[1]), dim=-1)  # (B, C, C)
        return self.norm(self.out(kv @ weights.transpose(1, 2)))  # channel c mixes the channels it attends to


class TimeScaling(torch.nn.Module):
    def __init__(self, dim: int, temb_dim: int, hidden: int, alpha_init: float, like: torch.Tensor):
        super().__init__()
        self.fc1, self.fc2 = _linear(temb_dim, hidden, like), _linear(hidden, dim, like)
        torch.nn.init.zeros_(self.fc2.weight)
        torch.nn.init.constant_(self.fc2.bias, math.log(alpha_init / (1 - alpha_init)))

    def forward(self, temb: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(F.silu(self.fc1(temb))))


class TimeAwareAdapters(torch.nn.Module):
    """All adapters of a model, registered on it as `a3ft` (so checkpoints name them)."""

    def __init__(self, widths: list[int], temb_dim: int, config: A3FTConfig, like: torch.Tensor):
        super().__init__()
        shared = sorted(set(widths))
        self.fusion = torch.nn.ModuleDict({str(w): TimeFusion(w, temb_dim, like) for w in shared})
        self.cross = torch.nn.ModuleDict({str(w): ChannelCrossAttention(w, like) for w in shared})
        self.scaling = torch.nn.ModuleList(TimeScaling(w, temb_dim, config.scaling_hidden, config.alpha_init, like)
                                           for w in widths)
        self.temb: torch.Tensor | None = None  # this forward's timestep embedding
        # The gate's running record over training forwards (grad enabled; sampling runs without):
        # per block, the sum of each forward's mean alpha_t (over batch and channels) and the count.
        # Plain attributes, detached, never registered: no state_dict entry, no effect on any output.
        self.gate_sums: dict[int, torch.Tensor] = {}
        self.gate_counts: dict[int, int] = {}
        self.gate_last: dict[int, torch.Tensor] = {}

    def forward(self, block: int, z: torch.Tensor) -> torch.Tensor:
        key = str(z.shape[-1])
        z_out = self.cross[key](self.fusion[key](z, self.temb), z)
        alpha = self.scaling[block](self.temb)[:, None, :]
        if torch.is_grad_enabled():
            with torch.no_grad():
                g = alpha.detach().double().mean()
                self.gate_sums[block] = self.gate_sums[block] + g if block in self.gate_sums else g
                self.gate_counts[block] = self.gate_counts.get(block, 0) + 1
                self.gate_last[block] = g
        return (1 - alpha) * z + alpha * z_out

    def gate_record(self) -> dict:
        """The mean gate alpha_t over this process's training forwards (a resumed run: since its
        resume), overall and per attention block, and at the last training forward."""
        if not self.gate_counts:
            return {}
        blocks = sorted(self.gate_counts)
        per_block = [float(self.gate_sums[b].item()) / self.gate_counts[b] for b in blocks]
        return {"gate_mean": sum(per_block) / len(per_block),
                "gate_mean_per_block": per_block,
                "gate_last_forward_mean": sum(float(self.gate_last[b].item()) for b in blocks) / len(blocks),
                "gate_forwards": min(self.gate_counts.values())}


class A3FT(Method):
    name = "a3ft"
    Config = A3FTConfig
    families = frozenset({"limited-data"})
    groups = ("attention", "time_embedding")
    summary = "attention blocks + time-aware adapters (time fusion, channel cross-attention, time scaling)"
    reference = "Moon et al., Fine-tuning Diffusion Models with Limited Data, 2022 (A3FT, Tab. 1)"

    def prepare(self, model, ctx):
        attentions = ctx.backbone.group("attention")
        (time_embedding,) = ctx.backbone.group("time_embedding")
        train_only(model, ctx, self.name, "attention")
        temb_dim = [m for m in time_embedding.modules() if isinstance(m, torch.nn.Linear)][-1].out_features
        projections = [attn.to_out[0] for attn in attentions]  # diffusers Attention: the FF of Eq. 3
        model.a3ft = TimeAwareAdapters([p.in_features for p in projections], temb_dim, self.config,
                                       reference_tensor(model))
        time_embedding.register_forward_hook(_keep_temb(model.a3ft))
        for i, proj in enumerate(projections):
            proj.register_forward_pre_hook(_adapt(model.a3ft, i))
        self._adapters = model.a3ft
        return model

    def diagnostics(self, model, ctx, probe) -> dict | None:
        """The time-scaling gate alpha_t over training: how far the adapters opened (it starts at
        alpha_init). Mean over training forwards and channels, averaged over the attention blocks."""
        adapters = getattr(self, "_adapters", None)
        return (adapters.gate_record() or None) if adapters is not None else None


def _keep_temb(adapters: TimeAwareAdapters):
    def hook(module, args, output):
        adapters.temb = output
    return hook


def _adapt(adapters: TimeAwareAdapters, block: int):
    def hook(module, args):
        return (adapters(block, args[0]),) + tuple(args[1:])
    return hook
