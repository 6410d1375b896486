"""A ControlNet beside a class-conditional DiT (kind `dit-controlnet`): spatial control of a
diffusers DiTTransformer2DModel, whose library has ControlNets only for UNets and for the SD3, Flux
and Hunyuan transformers.

The branch follows ControlNet's recipe in transformer form (as PixArt-delta's ControlNet for DiTs):
trainable copies of the DiT's first `controlnet.num_blocks` blocks (default: half of them) read the
noisy tokens plus the condition map's tokens; the map is patch-embedded by a copy of the DiT's own
patch embedding and enters through a zero-initialised linear layer, and each copied block's output
leaves through another zero-initialised linear layer and is added to the output of the matching
block of the frozen DiT. So at step 0 the controlled model is exactly the pre-trained one, and the
branch starts from the pre-trained weights, as a UNet ControlNet does from its encoder.

The condition map (3 channels in [0, 1], at image resolution) is scaled to [-1, 1] like the images;
a latent DiT sees it through its frozen VAE (PixArt-delta does the same). Condition: `{"y": class
labels, "control": maps}`; the unconditional branch of guidance drops the label and keeps the map.
Architecture config: the DiT's kwargs plus `controlnet: {num_blocks: N}`.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import nn

from bench.backbone.base import Cond
from bench.backbone.dit import DiTBackbone
from bench.errors import BenchError


def zero_linear(width: int) -> nn.Linear:
    layer = nn.Linear(width, width)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class DiTControlBranch(nn.Module):
    """Copies of a DiT's first blocks that turn (noisy tokens, condition map) into one residual per
    copied block."""

    def __init__(self, dit: nn.Module, num_blocks: int):
        super().__init__()
        width = dit.config.num_attention_heads * dit.config.attention_head_dim
        self.embed = copy.deepcopy(dit.pos_embed)  # the map's patches, with the DiT's positions
        self.cond_in = zero_linear(width)
        # The copies keep sharing one condition embedder among themselves, as the DiT's blocks do.
        self.blocks = copy.deepcopy(dit.transformer_blocks[:num_blocks])
        self.outs = nn.ModuleList(zero_linear(width) for _ in range(num_blocks))

    def forward(self, tokens: torch.Tensor, control: torch.Tensor, timestep: torch.Tensor,
                class_labels: torch.Tensor) -> list[torch.Tensor]:
        h = tokens + self.cond_in(self.embed(control))
        residuals = []
        for block, out in zip(self.blocks, self.outs):
            h = block(h, timestep=timestep, class_labels=class_labels)
            residuals.append(out(h))
        return residuals


@contextmanager
def added_to_outputs(blocks: nn.ModuleList, residuals: list[torch.Tensor]):
    """While active, block i's output gets residuals[i] added (the DiT's own forward runs as is)."""
    handles = [block.register_forward_hook(lambda module, args, output, r=r: output + r)
               for block, r in zip(blocks, residuals)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class DiTControlNetBackbone(DiTBackbone):
    kind = "dit-controlnet"
    base_kind = "dit"
    cond_keys = ("y", "control")
    groups: ClassVar[dict[str, str]] = {
        "controlnet": "the ControlNet branch (copies of the first blocks, the map's patch embedding, zero linears)",
        **DiTBackbone.groups,
    }

    # -- the common interface -------------------------------------------------------------------
    def control_input(self, control: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Condition maps in [0, 1] to the denoiser's space (pixels in [-1, 1], or VAE latents).

        A latent model encodes a batch's maps once: sampling calls the denoiser at every step with
        the same maps (guidance concatenates them into a new tensor each step, so the cache is
        keyed by content, not identity), and re-encoding them every step cost one VAE encoder pass
        per step. The encoding is the posterior's mode under no_grad, deterministic, so reusing
        it gives the same bits as encoding again."""
        images = control.to(device=self.device, dtype=dtype) * 2 - 1
        if self.vae is None:
            return images
        cached = getattr(self, "_control_cache", None)
        if cached is not None and cached[0].shape == images.shape and cached[0].dtype == images.dtype \
                and cached[0].device == images.device and torch.equal(cached[0], images):
            return cached[1]
        with torch.no_grad():
            latents = self.vae.encode(images).latent_dist.mode() * self.vae_scaling_factor
        self._control_cache = (images, latents)  # one entry: the batch in flight
        return latents

    def output(self, x, t, cond: Cond, model=None):
        model = model if model is not None else self.model
        control, branch = cond.get("control"), getattr(model, "controlnet", None)
        if control is None or branch is None:  # e.g. the knowledge bank: the pre-trained model alone
            return super().output(x, t, cond, model)
        residuals = branch(model.pos_embed(x), self.control_input(control, x.dtype), t, cond["y"])
        with added_to_outputs(model.transformer_blocks, residuals):
            return model(x, timestep=t, class_labels=cond["y"]).sample

    def null_cond(self, cond: Cond) -> Cond:
        return {**cond, **super().null_cond(cond)}  # the null class; the map stays, as in ControlNet

    def module_group(self, name: str):
        if name == "controlnet":
            return [("controlnet", self.model.controlnet)]
        return [(n, m) for n, m in super().module_group(name) if not n.startswith("controlnet.")]

    # -- building and loading -------------------------------------------------------------------
    @classmethod
    def base_config(cls, config):
        return {k: v for k, v in config.items() if k != "controlnet"}

    @classmethod
    def build(cls, kwargs):
        return super().build(cls.base_config(kwargs))

    @classmethod
    def extend(cls, model, kwargs: dict[str, Any]):
        n = len(model.transformer_blocks)
        blocks = dict(kwargs.get("controlnet") or {}).get("num_blocks", max(1, n // 2))
        if not 1 <= blocks <= n:
            raise BenchError(f"backbone config controlnet.num_blocks must be 1..{n} (the DiT's blocks), got {blocks}")
        model.controlnet = DiTControlBranch(model, blocks)
        return model

    @classmethod
    def load(cls, spec):
        backbone = super().load(spec)
        cls.extend(backbone.model, cls.architecture(spec))
        return backbone
