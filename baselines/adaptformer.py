"""AdaptFormer (Chen et al., NeurIPS 2022): a bottleneck adapter in parallel with each block's MLP.

    ff_out <- FFN(h) + s · up(ReLU(down(h)))

where h is the MLP's input (in DiT the adaLN-modulated, normalised tokens), so the adapter's
output passes through the block's adaLN-Zero gate like the MLP's. `up` starts at zero
(AdaptFormer's init), so the prepared model computes exactly what the pre-trained one does;
`s` is the paper's fixed scale 0.1. Bottleneck 64 is AdaptFormer's default and gives about the
parameter share DiffFit Tab. 1 reports for its AdaptFormer rows (see baselines/README.md).
"""

import math

import torch
from pydantic import Field

from baselines._common import ParameterEfficientMethod, freeze, mark_prepared, reference_tensor
from bench.method import MethodConfig


class AdaptFormerConfig(MethodConfig):
    bottleneck: int = Field(64, ge=1, description="adapter width (AdaptFormer's default 64)")
    scale: float = Field(0.1, description="fixed scale s of the adapter branch (AdaptFormer: 0.1)")


class Adapter(torch.nn.Module):
    def __init__(self, dim: int, bottleneck: int, scale: float, like: torch.Tensor):
        super().__init__()
        self.scale = scale
        self.down = torch.nn.Linear(dim, bottleneck, device=like.device, dtype=like.dtype)
        self.up = torch.nn.Linear(bottleneck, dim, device=like.device, dtype=like.dtype)
        torch.nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        torch.nn.init.zeros_(self.down.bias)
        torch.nn.init.zeros_(self.up.weight)
        torch.nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.scale * self.up(torch.relu(self.down(h)))


class AdaptFormer(ParameterEfficientMethod):
    name = "adaptformer"
    Config = AdaptFormerConfig
    summary = "parallel bottleneck adapters beside every MLP (width 64)"
    groups = ("blocks", "mlp")
    reference = "Chen et al., AdaptFormer, NeurIPS 2022 (arXiv 2205.13535); baseline in DiffFit Tab. 1"

    def prepare(self, model, ctx):
        blocks, mlps = ctx.backbone.group("blocks"), ctx.backbone.group("mlp")
        mark_prepared(model, self.name)
        freeze(model)
        like = reference_tensor(model)
        for block, mlp in zip(blocks, mlps):
            block.adaptformer = Adapter(ctx.backbone.hidden_size, self.config.bottleneck, self.config.scale, like)
            mlp.register_forward_hook(_add_adapter(block.adaptformer))
        return model


def _add_adapter(adapter: Adapter):
    def hook(module, args, output):
        return output + adapter(args[0])
    return hook
