"""LDM-4, class-conditional (kind `ldm`): the latent diffusion model of Rombach et al. (CVPR 2022) as
the corruption paper pre-trains it on ImageNet-1k, in diffusers' parts: a UNet2DConditionModel that
cross-attends to one token, the class embedding (LDM's ClassEmbedder: an embedding table with one
extra row, the null class of classifier-free guidance), over the 3-channel latents of a VQ-f4
autoencoder (diffusers' VQModel, quantised at decoding as LDM's decode_first_stage does).

The released LDM-4 models of the corruption study need the authors' fork of diffusers, so this
adapter builds the architecture for pre-training from scratch (`backbone.from_scratch`) or loads
the project's own weights files; it does not read those releases.

Architecture config: `{unet: {UNet2DConditionModel kwargs}, n_classes: K + 1}` (LDM's n_classes
counts the null row). Module groups as the `sd` adapter's UNet groups, plus `class_embedding`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from bench.backbone.base import Cond, load_vae, verified_weights_file
from bench.backbone.sd import SDBackbone
from bench.errors import BenchError
from bench.spec import BackboneSpec

# The LDM repository's configs/latent-diffusion/cin256-v2.yaml (class-conditional ImageNet, VQ-f4):
# model_channels 192, channel_mult [1, 2, 3, 5], 2 res blocks, attention at downsampling 2, 4, 8,
# `num_heads: 1` and no num_head_channels (so -1): ONE head as wide as its level (openaimodel.py:
# dim_head = ch // num_heads), one transformer layer (use_spatial_transformer, transformer_depth 1),
# context_dim 512, 1001 classes. diffusers' `attention_head_dim` of a UNet2DConditionModel is (by an
# old naming) the number of heads, each head then out_channels / heads wide: 1 gives the full-width
# head at every level, the mid block included. The weights do not depend on the heads (401.4M
# parameters either way); the attention does. [unsure] that the corruption paper's LDM-4 is exactly
# this config.
LDM4_CIN256: dict[str, Any] = {
    "unet": {"sample_size": 64, "in_channels": 3, "out_channels": 3, "layers_per_block": 2,
             "block_out_channels": [192, 384, 576, 960], "cross_attention_dim": 512,
             "attention_head_dim": 1,
             "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
             "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]},
    "n_classes": 1001,
}
# A preset's name is what a task file records (its run identity hashes the config as written, not
# the expansion), so a corrected preset gets a new name: `ldm4-cin256` (32 channels per head, not
# the yaml's one head) is kept only to refuse it with the reason.
PRESETS = {"ldm4-cin256-v2": LDM4_CIN256}
RETIRED_PRESETS = {"ldm4-cin256": "its attention had 32 channels per head where cin256-v2.yaml has one full-width "
                                  "head; use `preset: ldm4-cin256-v2`"}


class ClassConditionalLDM(nn.Module):
    """UNet + class embedding: one denoiser call, `forward(x, t, y)`."""

    def __init__(self, unet, n_classes: int):
        super().__init__()
        self.unet = unet
        self.class_embedder = nn.Embedding(n_classes, unet.config.cross_attention_dim)

    @property
    def config(self):
        return self.unet.config

    def forward(self, x, t, y):
        return self.unet(x, t, encoder_hidden_states=self.class_embedder(y)[:, None]).sample


class LDMBackbone(SDBackbone):
    kind = "ldm"
    cond_keys = ("y",)
    vae_class = "VQModel"
    groups: ClassVar[dict[str, str]] = {
        **{k: v for k, v in SDBackbone.groups.items() if k != "text_encoder"},
        "cross_attention": "the UNet's cross-attention modules (attn2: class token to image)",
        "class_embedding": "the class-embedding table (LDM's ClassEmbedder; the last row is the null class)",
    }

    @property
    def null_class(self) -> int:
        return self.model.class_embedder.num_embeddings - 1

    def output(self, x, t, cond: Cond, model=None):
        return (model if model is not None else self.model)(x, t, cond["y"])

    def null_cond(self, cond: Cond) -> Cond:
        return {**cond, "y": torch.full_like(cond["y"], self.null_class)}

    def module_group(self, name: str):
        if name == "class_embedding":
            return [("class_embedder", self.model.class_embedder)]
        if name not in self.groups:
            return self.group(name)  # the clear error
        return super().module_group(name)

    # -- building and loading -------------------------------------------------------------------
    @classmethod
    def config_kwargs(cls, config):
        from bench.backbone.base import expand_preset

        if config.get("preset") in RETIRED_PRESETS:
            raise BenchError(f"ldm preset {config['preset']!r} is retired: {RETIRED_PRESETS[config['preset']]}")
        return expand_preset(config, PRESETS, "ldm")

    @classmethod
    def architecture(cls, spec: BackboneSpec) -> dict[str, Any]:
        if not spec.config:
            raise BenchError(f"backbone kind {cls.kind!r} needs its architecture `config` "
                             f"(or `preset: ldm4-cin256-v2`)")
        kwargs = cls.config_kwargs(spec.config)
        if spec.num_source_classes is not None and kwargs["n_classes"] != spec.num_source_classes + 1:
            raise BenchError(f"backbone config n_classes ({kwargs['n_classes']}) must be num_source_classes + 1 "
                             f"({spec.num_source_classes + 1}: LDM's class table has the null class as its last row)")
        return kwargs

    @classmethod
    def build(cls, kwargs):
        from diffusers import UNet2DConditionModel

        return ClassConditionalLDM(UNet2DConditionModel(**kwargs["unet"]), kwargs["n_classes"])

    @classmethod
    def finalize(cls, model, loaded: bool):
        return model

    @classmethod
    def hub_refs(cls, spec):
        from diffusers import VQModel

        return [("VAE", VQModel, spec.vae)] if spec.vae is not None else []

    @classmethod
    def load(cls, spec: BackboneSpec) -> "LDMBackbone":
        if spec.weights is None:
            raise BenchError("backbone kind 'ldm' loads the project's weights files or trains from scratch; the "
                             "released LDM-4 models need the authors' fork of diffusers")
        from safetensors.torch import load_file

        path, digest = verified_weights_file(spec)
        kwargs = cls.architecture(spec)
        model = cls.build(kwargs)
        model.load_state_dict(load_file(path))
        return cls(model, load_vae(spec), spec.vae_scaling_factor, digest)

    @classmethod
    def wrap_without_weights(cls, model, spec: BackboneSpec) -> "LDMBackbone":
        return cls(model, None, spec.vae_scaling_factor, "architecture-only")
