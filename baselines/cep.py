"""Conditional Embedding Perturbation (Chen et al. 2024, Sec. 5.1, Eq. 8): during training, add
delta to the condition embedding, with delta ~ U(-gamma/sqrt(d), gamma/sqrt(d)) (CEP-U) or
N(0, (gamma/sqrt(d))^2) (CEP-G), d the embedding size, gamma = 1 (the paper's scale; some public
ports use sqrt(gamma/d), which is not the paper's). Sampling is unperturbed.

The perturbation acts on the output of the backbone's `class_embedding` group (DiT's label table,
shared by every block as in the original DiT, so one delta per sample reaches every block). The
delta of a batch is drawn in `make_batch` from torch's global RNG (seeded per step: resumable), for
the global batch, as its column `cep_delta`, so a data-parallel process keeps the rows of its share
(bench/distributed.py); `train_batch` hands the rows trained on to a forward hook that adds them
while the model trains with gradients on.

`mode: fixed` ("fixed CEP" of the seed's comparison table, which names it "fixed locations for
adding noise"; read here as one delta per training pair, drawn once and reused every time the pair
is drawn) needs the family's per-pair `index` in the batch [our reading; the paper gives no code].
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from pydantic import Field

from baselines._common import mark_prepared
from bench.errors import BenchError
from bench.method import Method, MethodConfig

DELTA = "cep_delta"  # the batch column of the per-row perturbation


class CEPConfig(MethodConfig):
    gamma: float = Field(1.0, gt=0, description="perturbation magnitude; the scale is gamma / sqrt(d)")
    mode: Literal["random", "fixed"] = Field("random", description="random: a new delta at every draw; "
                                                                   "fixed: one delta per training pair")


class CEPUniform(Method):
    name = "cep-u"
    Config = CEPConfig
    summary = "adds uniform noise of scale gamma/sqrt(d) to the condition embedding in training"
    reference = "Chen et al. 2024, Slight Corruption in Pre-training Data Makes Better Diffusion Models"
    families = frozenset({"pretrain-corruption", "class-transfer"})
    groups = ("class_embedding",)
    distribution: ClassVar[str] = "uniform"

    def prepare(self, model, ctx):
        mark_prepared(model, self.name)
        modules = ctx.backbone.group("class_embedding")
        self.dim = next(modules[0].parameters()).shape[-1]  # an embedding table: (rows, d)
        self.scale = self.config.gamma / math.sqrt(self.dim)
        self.base_seed = int(torch.randint(0, 2**31 - 1, ()))  # fixed mode: the run's draw (seeded)
        self.pending: torch.Tensor | None = None
        for m in modules:
            m.register_forward_hook(self._perturb)
        return model

    def draws(self, shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
        """Standardised draws: U(-1, 1) or N(0, 1); the delta is `scale` times these."""
        if self.distribution == "uniform":
            return torch.rand(shape, generator=generator) * 2 - 1
        return torch.randn(shape, generator=generator)

    def make_batch(self, batch, ctx):
        n = len(batch["x0"])
        if self.config.mode == "random":
            u = self.draws((n, self.dim))
        else:
            if "index" not in batch:
                raise BenchError(f"{self.name} mode=fixed needs the training pair's index in the batch, which "
                                 f"this task's family does not provide")
            u = torch.stack([self.draws((self.dim,), torch.Generator().manual_seed(self.base_seed + int(i)))
                             for i in batch["index"].tolist()])
        return {**batch, DELTA: self.scale * u}

    def train_batch(self, batch, ctx):
        self.pending = batch[DELTA]

    def _perturb(self, module, args, out):
        if not (module.training and torch.is_grad_enabled()) or self.pending is None:
            return None  # sampling and tracking see the unperturbed embedding
        if self.pending.shape != out.shape:
            raise BenchError(f"{self.name}: the condition embedding has shape {tuple(out.shape)}, the batch's "
                             f"delta {tuple(self.pending.shape)}")
        return out + self.pending.to(out.device, out.dtype)


class CEPGaussian(CEPUniform):
    name = "cep-g"
    summary = "adds Gaussian noise of std gamma/sqrt(d) to the condition embedding in training"
    distribution = "gaussian"
