"""Bayesian fine-tuning (Wu et al., "Towards Understanding and Mitigating the Corruption Stage in
Few-Shot Fine-Tuning of Diffusion Models"; code Nicholas0228/BNN-Finetuning-DMs, bayesian.py).

Every converted layer holds a mean (initialised from the pre-trained weight) and a standard
deviation sigma (initialised to `sigma_init`, trained, kept >= 1e-7), for its weight and its bias;
in training each forward pass draws a fresh weight mu + sigma * eps from torch's global RNG (which
the trainer seeds per step), in evaluation (`model.eval()`, as every sampler sets) the weight is the
mean: sigma 0, the converted model costs what the original does. An optional KL term
KL(N(theta_pre, prior^2) || N(mu, sigma^2)) pulls the posterior toward the pre-trained weights,
with weight `kl_weight` (the released scripts use 0; the paper sweeps 0..1).

- `bnn`: the Linear layers of the backbone's `blocks` group (a UNet's down, mid and up blocks, FF
  included; DiT's transformer blocks); time embedding and convolutions stay ordinary. The
  official code excludes cross-attention (`attn2`) when fine-tuning fully (DreamBooth) and
  includes it with LoRA: `cross_attention` says which. Every other parameter trains too (full
  fine-tuning with Bayesian layers). The paper's "DreamBooth + BNN" is `bnn+dreambooth` (DreamBooth's
  prior-preservation batch and loss, baselines/dreambooth.py); `bnn` alone has no prior loss.
- `bnn+lora`: with peft LoRA layers in the model (LoRA prepares first: `prepare_last`), the Bayesian
  layers are the LoRA up-projections (`lora_B`, mean initialised from its zeros, prior mean 0), as
  the official train_dreambooth_bayes_lora.py converts its LoRALinearLayer's `up`; the down
  projection stays deterministic. The official LoRA script converts the up blocks only
  (`--convert_up_block`, cross-attention included): so does this, where the backbone has up blocks.
- `bnn-norm`: the normalisation layers (GroupNorm, LayerNorm with affine parameters) instead.

The KL term is a `penalty` (added to whatever loss the other parts compute), so BNN composes with
methods that own the loss (DreamBooth's prior preservation, Diff-Tuning's retention weighting).

[unsure] The KL is averaged over the converted elements (a sum over millions of weights would make
`kl_weight` meaningless across model sizes); the paper does not say which.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from baselines._common import mark_prepared
from bench.method import Method, MethodConfig

MIN_SIGMA = 1e-7


class _Bayesian(nn.Module):
    """Mean and sigma for each of a layer's parameters (`names`), sampled in training."""

    def _init_from(self, layer: nn.Module, names: tuple[str, ...], sigma: float) -> None:
        self.names = tuple(n for n in names if getattr(layer, n, None) is not None)
        for n in self.names:
            value = getattr(layer, n).detach()
            setattr(self, f"{n}_mu", nn.Parameter(value.clone()))
            setattr(self, f"{n}_sigma", nn.Parameter(torch.full_like(value, sigma)))
            self.register_buffer(f"{n}_prior", value.clone(), persistent=False)  # the pre-trained value

    def sampled(self, n: str) -> torch.Tensor:
        mu = getattr(self, f"{n}_mu")
        if not self.training:
            return mu
        sigma = getattr(self, f"{n}_sigma").clamp_min(MIN_SIGMA)
        return mu + sigma * torch.randn_like(mu)

    def kl(self, prior_sigma: float) -> tuple[torch.Tensor, int]:
        """Sum of KL(N(prior, p^2) || N(mu, sigma^2)) over elements, and the element count."""
        total, count = 0.0, 0
        for n in self.names:
            mu, prior = getattr(self, f"{n}_mu"), getattr(self, f"{n}_prior")
            sigma = getattr(self, f"{n}_sigma").clamp_min(MIN_SIGMA)
            total = total + (torch.log(sigma / prior_sigma)
                             + (prior_sigma**2 + (prior - mu) ** 2) / (2 * sigma**2) - 0.5).sum()
            count += mu.numel()
        return total, count


class BayesianLinear(_Bayesian):
    def __init__(self, layer: nn.Linear, sigma: float):
        super().__init__()
        self._init_from(layer, ("weight", "bias"), sigma)

    def forward(self, x):
        return F.linear(x, self.sampled("weight"), self.sampled("bias") if "bias" in self.names else None)


class BayesianNorm(_Bayesian):
    def __init__(self, layer: nn.GroupNorm | nn.LayerNorm, sigma: float):
        super().__init__()
        self.layer = layer  # keeps eps, groups, shape; its own affine parameters are replaced
        self._init_from(layer, ("weight", "bias"), sigma)
        layer.weight, layer.bias = None, None

    def forward(self, x):
        w, b = self.sampled("weight"), self.sampled("bias") if "bias" in self.names else None
        if isinstance(self.layer, nn.GroupNorm):
            return F.group_norm(x, self.layer.num_groups, w, b, self.layer.eps)
        return F.layer_norm(x, self.layer.normalized_shape, w, b, self.layer.eps)


class BNNConfig(MethodConfig):
    sigma_init: float = Field(0.01, gt=0, description="initial sigma of every converted parameter")
    prior_sigma: float = Field(0.01, gt=0, description="sigma of the KL prior N(pre-trained, prior^2)")
    kl_weight: float = Field(0.0, ge=0, description="lambda, the KL term's weight (scripts: 0)")
    cross_attention: bool = Field(False, description="also convert cross-attention (attn2) layers (official: "
                                                     "off for full fine-tuning, on with LoRA)")


def _replace(model: nn.Module, qualified: str, new: nn.Module) -> None:
    parent, _, child = qualified.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


class BNN(Method):
    name = "bnn"
    Config = BNNConfig
    families = frozenset({"class-transfer", "limited-data", "few-shot"})
    groups = ("blocks",)
    prepare_last = True  # converts the LoRA layers a composed `lora` injects
    listed_with = ("dreambooth", "lora")  # the paper's DreamBooth + BNN and LoRA + BNN
    summary = "Bayesian Linear layers in the blocks (mean + trained sigma, sampled per forward; sigma 0 at evaluation)"
    reference = "Wu et al., corruption stage of few-shot fine-tuning, BNN mitigation (Nicholas0228/BNN-Finetuning-DMs)"

    def targets(self, ctx) -> list[tuple[str, nn.Module]]:
        blocks = ctx.backbone.module_group("blocks")
        lora = [(f"{block}.{n}", m) for block, module in blocks for n, m in module.named_modules()
                if isinstance(m, nn.Linear) and ".lora_B." in f".{n}"]
        if lora:  # Bayesian LoRA: the up-projections, in the up blocks where the backbone has them
            up = [(n, m) for n, m in lora if ".up_blocks." in f".{n}"]
            return up or lora
        out = []
        for block, module in blocks:
            for n, m in module.named_modules():
                if isinstance(m, nn.Linear) and (self.config.cross_attention or ".attn2." not in f".{n}."):
                    out.append((f"{block}.{n}", m))
        return out

    def convert(self, layer: nn.Module) -> nn.Module:
        return BayesianLinear(layer, self.config.sigma_init)

    def prepare(self, model, ctx):
        mark_prepared(model, self.name)
        for qualified, layer in self.targets(ctx):
            _replace(model, qualified, self.convert(layer))
        return model

    def penalty(self, model, ctx):
        if self.config.kl_weight == 0:
            return None
        total, count = 0.0, 0
        for m in model.modules():
            if isinstance(m, _Bayesian):
                kl, n = m.kl(self.config.prior_sigma)
                total, count = total + kl, count + n
        return self.config.kl_weight * total / max(count, 1)


class BNNNorm(BNN):
    name = "bnn-norm"
    listed_with = ("dreambooth",)
    summary = "Bayesian normalisation layers only (GroupNorm / LayerNorm affine parameters)"

    def targets(self, ctx):
        norms = (nn.GroupNorm, nn.LayerNorm)
        return [(f"{block}.{n}", m) for block, module in ctx.backbone.module_group("blocks")
                for n, m in module.named_modules() if isinstance(m, norms) and m.weight is not None]

    def convert(self, layer):
        return BayesianNorm(layer, self.config.sigma_init)
