"""Dropout regularisation (the "dropout" row of the corruption paper's comparison with CEP): every
dropout layer of the denoiser's blocks drops with probability p while training (diffusers' DiT has
them after attention and inside the MLP, at 0 by default); sampling runs in eval mode, without
them. The paper does not say where its dropout sits [unsure]; these are the layers the
architecture itself provides."""

from __future__ import annotations

import torch
from pydantic import Field

from bench.errors import BenchError
from bench.method import Method, MethodConfig


class DropoutConfig(MethodConfig):
    p: float = Field(0.1, gt=0, lt=1, description="drop probability")


class Dropout(Method):
    name = "dropout"
    Config = DropoutConfig
    summary = "dropout with probability p in every block while training"
    reference = "Chen et al. 2024, comparison table (clean, dropout, label smoothing, CEP)"
    families = frozenset({"pretrain-corruption"})
    groups = ("blocks",)

    def prepare(self, model, ctx):
        layers = [m for block in ctx.backbone.group("blocks") for m in block.modules()
                  if isinstance(m, torch.nn.Dropout)]
        if not layers:
            raise BenchError("dropout: the backbone's blocks have no dropout layers")
        for m in layers:
            m.p = self.config.p
        return model
