"""What the parameter-efficient baselines share.

Every method here decides *what trains* and nothing else: `prepare()` freezes the backbone,
injects the method's own modules (created on the backbone's device and dtype, drawn from torch's
global RNG, which the trainer seeds beforehand) and marks the method's parameters trainable. The
default `trainable_parameters()` (the `requires_grad` ones) and the default checkpoint state
(trainable parameters by name) then need no override, which is what lets any of them compose with
`diff-tuning` (which changes *how* the model trains) under bench.method's one composition rule.

Injected tensors are registered as named parameters of the model (never kept on the method
object), so a fresh process that runs `prepare()` again finds them by name when it loads a
checkpoint, and sampling sees them because they live in the model.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from bench.errors import BenchError
from bench.method import Method


class ParameterEfficientMethod(Method):
    """Base of the baselines that train a small subset (or a small addition) of the backbone.

    `parameter_efficient` is what bench.registry.composed_names() looks for when it lists
    `X+diff-tuning`; methods outside the repo can set it too."""

    parameter_efficient: ClassVar[bool] = True
    families = frozenset({"class-transfer"})


def dit_blocks(model: torch.nn.Module, method: str) -> torch.nn.ModuleList:
    """The transformer blocks of a diffusers DiT; a clear error for any other denoiser."""
    blocks = getattr(model, "transformer_blocks", None)
    if not isinstance(blocks, torch.nn.ModuleList) or not hasattr(getattr(model, "config", None), "num_layers"):
        raise BenchError(f"method {method!r} needs a DiT backbone (diffusers DiTTransformer2DModel), "
                         f"got {type(model).__name__}")
    return blocks


def hidden_size(model: torch.nn.Module) -> int:
    return model.config.num_attention_heads * model.config.attention_head_dim


def reference_tensor(model: torch.nn.Module) -> torch.Tensor:
    """Any backbone parameter: new parameters take its device and dtype (meta included, which is
    how bench.params counts parameters of a DiT-XL-2 without its weights)."""
    return next(model.parameters())


def freeze(model: torch.nn.Module) -> None:
    model.requires_grad_(False)


def unfreeze(params) -> None:
    for p in params:
        p.requires_grad_(True)


def is_class_embedding(name: str) -> bool:
    # diffusers gives every DiT block its own copy of the label table
    # (transformer_blocks.<i>.norm1.emb.class_embedder.embedding_table.weight).
    return "class_embedder" in name


def norm_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Affine parameters of normalisation layers (none in DiT, whose LayerNorms have no affine;
    adaLN's modulation Linear is named `norm1.linear` but is a projection, not a norm)."""
    norms = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.RMSNorm)
    return [p for m in model.modules() if isinstance(m, norms) for p in m.parameters(recurse=False)]


def mark_prepared(model: torch.nn.Module, method: str) -> None:
    """Injecting twice would stack hooks; fail loudly instead."""
    done = getattr(model, "_bench_injected", set())
    if method in done:
        raise BenchError(f"method {method!r} was already applied to this model")
    model._bench_injected = done | {method}
