"""DiffFit (Xie et al., ICCV 2023): biases, norms, class embedding and new scale factors train.

Learnable scales gamma (init 1, so the prepared model equals the pre-trained one) are added to
the first `gamma_blocks` blocks (default: the first half, 14 of DiT-XL-2's 28, where the paper
finds them most useful), at the places the official Diff-Tuning code's DiffFit baseline puts them
(thuml/Diffusion-Tuning, models.py):
- on the attention and MLP residual branches, x <- x + gate·gamma1·Attn(.) and x + gate·gamma2·FFN(.);
- inside attention, on the q, k, v projections (the original's fused qkv, 3·dim) and on the
  output projection.
Trainable besides the gammas: every bias, every normalisation affine (DiT has none) and the
class embedding (the one (classes+1) x hidden table every block shares, as in the original DiT;
see baselines/README.md for the parameter count). The official comparison
trains DiffFit with lr 1e-3 (ten times full fine-tuning's); that is this config's default `lr`.
"""

import torch
from pydantic import Field

from baselines._common import (ParameterEfficientMethod, freeze, group_parameters, mark_prepared, reference_tensor,
                               unfreeze)
from bench.errors import BenchError
from bench.method import MethodConfig


class DiffFitConfig(MethodConfig):
    lr: float | None = Field(1e-3, gt=0, description="learning rate (official comparison: 1e-3); None = the task's")
    gamma_blocks: int | None = Field(None, ge=0, description="blocks (from the input side) that get gammas; None = half")
    attention_gammas: bool = Field(True, description="also scale q, k, v and the attention output projection")
    class_embedding: bool = Field(True, description="train the (shared) label-embedding table")


# (attribute on the block, submodule whose output it scales); the sizes are all `hidden`.
_BRANCHES = (("difffit_gamma_attn", "attn1"), ("difffit_gamma_ff", "ff"))
_INSIDE_ATTENTION = (("difffit_gamma_q", "attn1.to_q"), ("difffit_gamma_k", "attn1.to_k"),
                     ("difffit_gamma_v", "attn1.to_v"), ("difffit_gamma_proj", "attn1.to_out.0"))


class DiffFit(ParameterEfficientMethod):
    name = "difffit"
    Config = DiffFitConfig
    summary = "biases + norms + class embedding + scale factors in the first half of the blocks; lr 1e-3"
    groups = ("blocks", "class_embedding", "norms")
    reference = "Xie et al., DiffFit, ICCV 2023 (arXiv 2304.06648)"

    def prepare(self, model, ctx):
        blocks = ctx.backbone.group("blocks")
        mark_prepared(model, self.name)
        n = len(blocks) // 2 if self.config.gamma_blocks is None else self.config.gamma_blocks
        if n > len(blocks):
            raise BenchError(f"method 'difffit': gamma_blocks={n} but the backbone has {len(blocks)} blocks")
        freeze(model)
        like = reference_tensor(model)
        places = _BRANCHES + (_INSIDE_ATTENTION if self.config.attention_gammas else ())
        for block in list(blocks)[:n]:
            for attr, path in places:
                gamma = torch.nn.Parameter(torch.ones(ctx.backbone.hidden_size, device=like.device, dtype=like.dtype))
                block.register_parameter(attr, gamma)
                block.get_submodule(path).register_forward_hook(_scale(block, attr))
        unfreeze(p for name, p in model.named_parameters() if name.endswith(".bias") or ".difffit_gamma_" in name)
        if self.config.class_embedding:
            unfreeze(group_parameters(ctx, "class_embedding"))
        unfreeze(group_parameters(ctx, "norms"))
        return model


def _scale(block, attr: str):
    def hook(module, args, output):
        return getattr(block, attr) * output
    return hook
