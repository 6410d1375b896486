"""UNet (diffusers UNet2DModel): unconditional pixel-space U-Net, e.g. iDDPM's ImageNet-64 model.

Condition: none (`cond_keys = ()`, the null condition is `{}`). A learned-sigma model's variance
channels follow the noise prediction in `output`, as for DiT; the hybrid loss (`train.loss: hybrid`)
trains them. Timesteps go to the model as given; a checkpoint trained with iDDPM's
`rescale_timesteps` on a longer schedule (e.g. 4000 steps) needs its family to rescale them.

One key of a backbone `config` is the adapter's, not diffusers': `num_attention_heads`. iDDPM fixes
the number of heads (4) at every width, while UNet2DModel fixes the head *width*, so the model is
built with one head per attention module and the heads are set afterwards (`set_attention_heads`);
the weights do not depend on it, the attention computed from them does. A `config` may also name
a pinned architecture (`preset: iddpm-imagenet64`) and override some of its keys.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from diffusers import UNet2DModel
from diffusers.models.attention_processor import Attention
from diffusers.models.resnet import ResnetBlock2D

from bench.backbone.base import Backbone, Cond, expand_preset, load_vae
from bench.errors import BenchError
from bench.spec import BackboneSpec

# improved-diffusion (Nichol & Dhariwal 2021) ImageNet-64: image_size 64, num_channels 128,
# channel_mult (1, 2, 3, 4), num_res_blocks 3, attention_resolutions "16,8" (the 384- and 512-wide
# levels), num_heads 4, learn_sigma (6 outputs), use_scale_shift_norm, dropout 0. GroupNorm(32),
# eps 1e-5 and the cos-then-sin timestep embedding are diffusers' defaults already. The attention
# GroupNorm must be asked for: with "scale_shift" diffusers' mid block otherwise drops it.
IDDPM_IMAGENET64: dict[str, Any] = {
    "sample_size": 64, "in_channels": 3, "out_channels": 6,
    "block_out_channels": [128, 256, 384, 512], "layers_per_block": 3,
    "down_block_types": ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
    "attention_head_dim": None, "num_attention_heads": 4, "attn_norm_num_groups": 32,
    "resnet_time_scale_shift": "scale_shift", "flip_sin_to_cos": True, "freq_shift": 0, "dropout": 0.0,
}
PRESETS: dict[str, dict[str, Any]] = {"iddpm-imagenet64": IDDPM_IMAGENET64}
KNOWN_ARCHITECTURES: dict[tuple[str, str | None], dict[str, Any]] = {}  # (hub repo, subfolder) -> kwargs


def resolve_config(config: dict[str, Any]) -> dict[str, Any]:
    return expand_preset(config, PRESETS, "unet2d")


def set_attention_heads(model: torch.nn.Module, heads: int) -> None:
    for m in model.modules():
        if isinstance(m, Attention):
            if m.inner_dim % heads:
                raise BenchError(f"attention width {m.inner_dim} is not divisible by {heads} heads")
            m.heads, m.scale = heads, (m.inner_dim // heads) ** -0.5


def build_unet(config: dict[str, Any]) -> UNet2DModel:
    kwargs = resolve_config(config)
    heads = kwargs.pop("num_attention_heads", None)
    model = UNet2DModel(**kwargs)
    if heads is not None:
        set_attention_heads(model, heads)
    return model


class UNet2DBackbone(Backbone):
    kind = "unet2d"
    denoiser_class = UNet2DModel
    known_architectures = KNOWN_ARCHITECTURES
    cond_keys = ()
    groups: ClassVar[dict[str, str]] = {
        "blocks": "the down, mid and up blocks",
        "attention": "every self-attention module (group_norm, to_q, to_k, to_v, to_out.0 inside)",
        "resnets": "every residual block",
        "norms": "normalisation layers with affine parameters (GroupNorm, LayerNorm)",
        "time_embedding": "the timestep-embedding MLP (its output conditions every residual block)",
        "output": "the final GroupNorm and output convolution",
    }

    def output(self, x, t, cond: Cond, model=None):
        return (model if model is not None else self.model)(x, t).sample

    def null_cond(self, cond: Cond) -> Cond:
        return {}

    def module_group(self, name: str):
        model = self.model
        if not isinstance(getattr(model, "down_blocks", None), torch.nn.ModuleList):
            raise BenchError(f"the unet2d adapter expects a diffusers UNet2DModel, got {type(model).__name__}")
        named = list(model.named_modules())
        if name == "blocks":
            return ([(f"down_blocks.{i}", b) for i, b in enumerate(model.down_blocks)]
                    + ([("mid_block", model.mid_block)] if model.mid_block is not None else [])
                    + [(f"up_blocks.{i}", b) for i, b in enumerate(model.up_blocks)])
        if name == "attention":
            return [(n, m) for n, m in named if isinstance(m, Attention)]
        if name == "resnets":
            return [(n, m) for n, m in named if isinstance(m, ResnetBlock2D)]
        if name == "norms":
            norms = (torch.nn.GroupNorm, torch.nn.LayerNorm)
            return [(n, m) for n, m in named if isinstance(m, norms) and any(True for _ in m.parameters(recurse=False))]
        if name == "time_embedding":
            return [("time_embedding", model.time_embedding)]
        if name == "output":
            return [("conv_norm_out", model.conv_norm_out), ("conv_out", model.conv_out)]
        return self.group(name)  # an unknown name: group() raises the clear error

    @classmethod
    def hub_refs(cls, spec):
        return [(w, c, r) for w, c, r in (("backbone", UNet2DModel, spec.pretrained),) if r is not None]

    @classmethod
    def config_kwargs(cls, config):
        return resolve_config(config)

    @classmethod
    def build(cls, kwargs):
        return build_unet(kwargs)

    @classmethod
    def load(cls, spec: BackboneSpec) -> "UNet2DBackbone":
        model, digest = cls.load_denoiser(spec)
        heads = resolve_config(spec.config).get("num_attention_heads")  # not in a diffusers config
        if spec.weights is None and heads is not None:
            set_attention_heads(model, heads)
        return cls(model, load_vae(spec), spec.vae_scaling_factor, digest)

    @classmethod
    def wrap_without_weights(cls, model: torch.nn.Module, spec: BackboneSpec) -> "UNet2DBackbone":
        return cls(model, None, spec.vae_scaling_factor, "architecture-only")
