"""VPT-Deep (Jia et al., ECCV 2022): learned prompt tokens in front of the sequence at every block.

Before block i, its own n prompt tokens are prepended to the image tokens; after the block the n
outputs in those positions are dropped, so block i+1 sees fresh prompts (the "deep" variant).
Done with a forward pre-hook and a forward hook on each diffusers block, so the model class and
its forward stay diffusers'. The prompts are drawn uniformly with VPT's Xavier bound
sqrt(6 / (patch_area · in_channels + hidden)) from torch's global RNG (seeded by the trainer).
Unlike the zero-initialised adapters, prompts change the model's output from step 0.
"""

import math

import torch
from pydantic import Field

from baselines._common import ParameterEfficientMethod, freeze, mark_prepared, reference_tensor
from bench.method import MethodConfig


class VPTDeepConfig(MethodConfig):
    tokens: int = Field(100, ge=1, description="prompt tokens per block (compute grows with the sequence)")


class VPTDeep(ParameterEfficientMethod):
    name = "vpt-deep"
    Config = VPTDeepConfig
    summary = "learned prompt tokens prepended at every block (100 per block)"
    groups = ("blocks",)
    reference = "Jia et al., Visual Prompt Tuning, ECCV 2022 (arXiv 2203.12119); baseline in DiffFit Tab. 1"

    def prepare(self, model, ctx):
        blocks = ctx.backbone.group("blocks")
        mark_prepared(model, self.name)
        freeze(model)
        like = reference_tensor(model)
        dim, n = ctx.backbone.hidden_size, self.config.tokens
        bound = math.sqrt(6.0 / (ctx.backbone.patch_input_dim + dim))
        for block in blocks:
            prompts = torch.empty(n, dim, device=like.device, dtype=like.dtype).uniform_(-bound, bound)
            block.vpt_prompts = torch.nn.Parameter(prompts)
            block.register_forward_pre_hook(_prepend(block))
            block.register_forward_hook(_drop(n))
        return model


def _prepend(block):
    def hook(module, args):
        hidden = args[0]
        prompts = block.vpt_prompts.to(hidden.dtype).expand(hidden.shape[0], -1, -1)
        return (torch.cat([prompts, hidden], dim=1), *args[1:])
    return hook


def _drop(n: int):
    def hook(module, args, output):
        return output[:, n:]
    return hook
