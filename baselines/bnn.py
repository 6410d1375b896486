"""Bayesian fine-tuning (Wu et al., "Towards Understanding and Mitigating the Corruption Stage in
Few-Shot Fine-Tuning of Diffusion Models"; code Nicholas0228/BNN-Finetuning-DMs, bayesian.py).

Every converted layer holds a mean (initialised from the pre-trained weight) and a standard
deviation sigma (initialised to `sigma_init`, trained), for its weight and its bias; in training
each forward pass draws a fresh weight mu + sigma * eps from torch's global RNG (which the trainer
seeds per step), in evaluation (`model.eval()`, as every sampler sets) the weight is the mean:
sigma 0, the converted model costs what the original does. As the official layers, sigma is a raw
parameter kept >= 1e-7 by clamping its `.data` (here after every optimiser step, `after_step`; the
official layers clamp at the start of the next forward, the same values), never inside the graph.

The optional KL term is the official `cal_KL`: KL(N(theta_pre, prior^2) || N(mu, sigma^2)) per
element (elements below -1e-7, rounding only, set to 0), SUMMED over the elements and over the
converted modules (`cal_KL_modules`), times `kl_weight` (the released scripts use 0; the paper
sweeps 0..1). `kl_reduction: mean` divides the sum by the number of converted elements instead, so
that one `kl_weight` means the same across model sizes (not the official scale; declare it).

- `bnn`: the Linear layers of the backbone's `blocks` group (a UNet's down, mid and up blocks, FF
  included; DiT's transformer blocks); convolutions and the resnets' `time_emb_proj` stay ordinary
  (`time_emb`: the official `skip_time` defaults to True). The official code excludes cross-attention
  (`attn2`) when fine-tuning fully (DreamBooth): `cross_attention` says whether to include it. Every
  other parameter trains too (full fine-tuning with Bayesian layers). The paper's "DreamBooth +
  BNN" is `bnn+dreambooth` (DreamBooth's prior-preservation batch and loss, baselines/dreambooth.py);
  `bnn` alone has no prior loss.
- `bnn+lora`: with peft LoRA layers in the model (LoRA prepares first: `prepare_last`), the Bayesian
  layers are the up-projections (`lora_B`, mean initialised from its zeros, prior mean 0) of EVERY
  LoRA layer, self- and cross-attention, q/k/v/out, in every block, as the official
  train_dreambooth_bayes_lora.py converts the `up` of every LoRAAttnProcessor; the down
  projections stay deterministic. (The few-shot family gives `lora` the scripts' rank 4 on
  q/k/v/out: `LoRA.family_defaults`.)
- `bnn-norm`: the normalisation layers (GroupNorm, LayerNorm with affine parameters) instead.

`sigma_relative`: sigma_init is a fraction of each converted layer's weight scale (the RMS of its
pre-trained weight; the bias takes the weight's scale), so that the noise perturbs every layer
alike whatever its magnitude; a layer whose weight is all zeros (a LoRA up-projection at
initialisation) takes sigma_init as is. The official code initialises an absolute sigma (0.01).

After training, `diagnostics` records in the result whether BNN did anything: the converted
elements' sigma (initial and final mean, min, max, its mean relative to the weight scale), the KL
sum, and the loss on the last batch with sampled vs mean weights (`loss_change`).

The KL term is a `penalty` (added to whatever loss the other parts compute), so BNN composes with
methods that own the loss (DreamBooth's prior preservation, Diff-Tuning's retention weighting).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from baselines._common import mark_prepared
from bench.method import Method, MethodConfig

MIN_SIGMA = 1e-7


def weight_scale(layer: nn.Module) -> float:
    """The RMS of a layer's weight (0 for an all-zero weight, and on the meta device, where
    parameters are only counted)."""
    if layer.weight.is_meta:
        return 0.0
    return float(layer.weight.detach().float().pow(2).mean().sqrt())


class _Bayesian(nn.Module):
    """Mean and sigma for each of a layer's parameters (`names`), sampled in training."""

    def _init_from(self, layer: nn.Module, names: tuple[str, ...], sigma: float) -> None:
        self.names = tuple(n for n in names if getattr(layer, n, None) is not None)
        self.scale = weight_scale(layer)  # the pre-trained weight's RMS (diagnostics, relative sigma)
        for n in self.names:
            value = getattr(layer, n).detach()
            setattr(self, f"{n}_mu", nn.Parameter(value.clone()))
            setattr(self, f"{n}_sigma", nn.Parameter(torch.full_like(value, sigma)))
            self.register_buffer(f"{n}_prior", value.clone(), persistent=False)  # the pre-trained value

    def sampled(self, n: str) -> torch.Tensor:
        mu = getattr(self, f"{n}_mu")
        if not self.training:
            return mu
        return mu + getattr(self, f"{n}_sigma") * torch.randn_like(mu)

    @torch.no_grad()
    def clamp_sigma(self) -> None:
        """sigma >= 1e-7 on `.data`, as the official layers (outside the graph)."""
        for n in self.names:
            getattr(self, f"{n}_sigma").data.clamp_(min=MIN_SIGMA)

    def sigmas(self) -> list[torch.Tensor]:
        return [getattr(self, f"{n}_sigma") for n in self.names]

    def kl(self, prior_sigma: float) -> tuple[torch.Tensor, int]:
        """The official cal_KL summed over this layer's parameters, and the element count:
        sum of log(sigma / p) - 1/2 + p^2 / (2 sigma^2) + (prior - mu)^2 / (2 sigma^2)."""
        total, count = 0.0, 0
        for n in self.names:
            mu, prior = getattr(self, f"{n}_mu"), getattr(self, f"{n}_prior")
            sigma = getattr(self, f"{n}_sigma")
            kl = (torch.log(sigma / prior_sigma) - 0.5 + 0.5 * (prior_sigma / sigma) ** 2
                  + 0.5 * (prior - mu) ** 2 / sigma**2)
            total = total + torch.where(kl < -1e-7, torch.zeros_like(kl), kl).sum()
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
    sigma_init: float = Field(0.01, gt=0, description="initial sigma of every converted parameter (absolute, or a "
                                                      "fraction of the layer's weight RMS with sigma_relative)")
    sigma_relative: bool = Field(False, description="sigma_init relative to each layer's pre-trained weight scale "
                                                    "(RMS); official: absolute 0.01")
    prior_sigma: float = Field(0.01, gt=0, description="sigma of the KL prior N(pre-trained, prior^2)")
    kl_weight: float = Field(0.0, ge=0, description="lambda, the KL term's weight (scripts: 0)")
    kl_reduction: Literal["sum", "mean"] = Field(
        "sum", description="sum: the official cal_KL, summed over elements and modules; mean: divided by the "
                           "converted elements (one lambda across model sizes; not the official scale)")
    cross_attention: bool = Field(False, description="also convert cross-attention (attn2) layers (official: "
                                                     "off for full fine-tuning; Bayesian LoRA converts every "
                                                     "LoRA up-projection whatever this says)")
    time_emb: bool = Field(False, description="also convert the resnets' time_emb_proj (official --convert_time; "
                                              "default skip_time=True leaves it deterministic)")


def _replace(model: nn.Module, qualified: str, new: nn.Module) -> None:
    parent, _, child = qualified.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def bayesian_layers(model: nn.Module) -> list[_Bayesian]:
    return [m for m in model.modules() if isinstance(m, _Bayesian)]


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
        if lora:  # Bayesian LoRA: the up-projection of every LoRA layer (self- and cross-attention)
            return lora
        out = []
        for block, module in blocks:
            for n, m in module.named_modules():
                if not isinstance(m, nn.Linear):
                    continue
                if ".attn2." in f".{n}." and not self.config.cross_attention:
                    continue
                if n.rpartition(".")[2] == "time_emb_proj" and not self.config.time_emb:
                    continue
                out.append((f"{block}.{n}", m))
        return out

    def sigma_for(self, layer: nn.Module) -> float:
        c = self.config
        scale = weight_scale(layer) if c.sigma_relative else 0.0
        return c.sigma_init * scale if scale > 0 else c.sigma_init

    def convert(self, layer: nn.Module) -> nn.Module:
        return BayesianLinear(layer, self.sigma_for(layer))

    def prepare(self, model, ctx):
        mark_prepared(model, self.name)
        for qualified, layer in self.targets(ctx):
            _replace(model, qualified, self.convert(layer))
        self._initial = self._sigma_stats(model)
        return model

    def after_step(self, model, ctx):
        for m in bayesian_layers(model):
            m.clamp_sigma()

    def kl_sum(self, model) -> tuple[torch.Tensor, int]:
        total, count = 0.0, 0
        for m in bayesian_layers(model):
            kl, n = m.kl(self.config.prior_sigma)
            total, count = total + kl, count + n
        return total, count

    def penalty(self, model, ctx):
        if self.config.kl_weight == 0:
            return None
        total, count = self.kl_sum(model)
        if self.config.kl_reduction == "mean":
            total = total / max(count, 1)
        return self.config.kl_weight * total

    @staticmethod
    @torch.no_grad()
    def _sigma_stats(model) -> dict | None:
        layers = bayesian_layers(model)
        if not layers or any(s.is_meta for m in layers for s in m.sigmas()):
            return None
        flat = torch.cat([s.detach().float().flatten() for m in layers for s in m.sigmas()])
        rel = [float(s.detach().float().mean()) / m.scale for m in layers if m.scale > 0 for s in m.sigmas()]
        return {"mean": float(flat.mean()), "min": float(flat.min()), "max": float(flat.max()),
                "relative_to_weight_rms": sum(rel) / len(rel) if rel else None,
                "layers": len(layers), "elements": int(flat.numel())}

    def diagnostics(self, model, ctx, probe):
        final = self._sigma_stats(model)
        if final is None:
            return None
        kl, _ = self.kl_sum(model)
        record = {"sigma_initial": getattr(self, "_initial", None), "sigma_final": final,
                  "sigma_changed": final["mean"] != (getattr(self, "_initial", None) or {}).get("mean"),
                  "kl_sum": float(kl.detach()) if torch.is_tensor(kl) else float(kl)}
        if probe is None:
            return record
        was = model.training
        sampled = sum(probe(True, k) for k in range(4)) / 4  # four weight draws, fixed seeds
        mean = probe(False)
        model.train(was)
        return {**record, "loss_sampled_weights": sampled, "loss_mean_weights": mean, "loss_change": sampled - mean}


class BNNNorm(BNN):
    name = "bnn-norm"
    listed_with = ("dreambooth",)
    summary = "Bayesian normalisation layers only (GroupNorm / LayerNorm affine parameters)"

    def targets(self, ctx):
        norms = (nn.GroupNorm, nn.LayerNorm)
        return [(f"{block}.{n}", m) for block, module in ctx.backbone.module_group("blocks")
                for n, m in module.named_modules() if isinstance(m, norms) and m.weight is not None]

    def convert(self, layer):
        return BayesianNorm(layer, self.sigma_for(layer))
