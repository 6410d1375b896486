"""Text-to-image backbones: Stable Diffusion's UNet2DConditionModel with its text encoder (kind
`sd`), and the same with a ControlNet beside it (kind `sd-controlnet`).

The denoiser is one module (`TextToImage`) holding the UNet, the text encoder and, for
`sd-controlnet`, the ControlNet, so the trainer, the sampler and the methods see one model with one
call, `output(x_t, t, {"input_ids", ["control"]})`; methods pick what trains by module group
(`controlnet`, `unet`, `text_encoder`, `blocks`, ...). Text goes in as token ids: the prompt is
encoded inside the forward pass, so classifier-free guidance's "unconditional" input is simply the
empty prompt's ids (`null_cond`).

ControlNet: `ControlNetModel.from_unet` copies the UNet's input convolution, time embedding and
down/mid blocks and zero-initialises every output projection, so at step 0 the controlled model
is exactly the pre-trained one. The conditioning image (3 channels in [0, 1]) enters through the
ControlNet's small conditioning encoder, which downsamples by 2^(len(channels) - 1): SD v1.5 uses
(16, 32, 96, 256) from 512 px images to 64 px latents; a pixel-space tiny model uses one stage.

Architecture config (`backbone.config`): `{unet: {...}, text_encoder: {...}, tokenizer: {...},
controlnet: {conditioning_embedding_out_channels: [...]}}`, or `{preset: sd15}` for Stable
Diffusion v1.5's. The tiny tokenizer is word-level over the procedural captions' vocabulary
(bench/data/layouts.py), built with the `tokenizers` library; the paper profile uses the
checkpoint's own CLIP tokenizer.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from bench.backbone.base import (Backbone, Cond, expand_preset, load_vae, offline_error, state_sha256,
                                 verified_weights_file)
from bench.errors import BenchError
from bench.spec import BackboneSpec, HubRef

# Stable Diffusion v1.5 (its unet/config.json and text_encoder/config.json), so parameters are
# counted offline on the meta device.
SD15: dict[str, Any] = {
    "unet": {"sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
             "block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 768, "attention_head_dim": 8,
             "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
             "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]},
    "text_encoder": {"vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                     "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
                     "projection_dim": 768},
    "tokenizer": {"kind": "clip", "max_length": 77},
    "controlnet": {"conditioning_embedding_out_channels": [16, 32, 96, 256]},
}
PRESETS = {"sd15": SD15}


def resolve(config: dict[str, Any]) -> dict[str, Any]:
    return expand_preset(config, PRESETS, "sd")


class TextToImage(nn.Module):
    """UNet + text encoder (+ ControlNet): one denoiser call for the whole text-to-image model."""

    def __init__(self, unet, text_encoder, controlnet=None):
        super().__init__()
        self.unet = unet
        self.text_encoder = text_encoder
        self.controlnet = controlnet

    @property
    def config(self):
        return self.unet.config

    def forward(self, x, t, input_ids, control=None):
        text = self.text_encoder(input_ids)[0]
        if self.controlnet is None or control is None:
            return self.unet(x, t, encoder_hidden_states=text).sample
        down, mid = self.controlnet(x, t, encoder_hidden_states=text, controlnet_cond=control.to(x.dtype),
                                    return_dict=False)
        return self.unet(x, t, encoder_hidden_states=text, down_block_additional_residuals=down,
                         mid_block_additional_residual=mid).sample


class WordTokenizer:
    """Word-level ids over a fixed vocabulary (tokenizers' WordLevel model), padded to max_length,
    with begin/end tokens as CLIP's; unknown words are an error, not a silent <unk>."""

    def __init__(self, words: tuple[str, ...], max_length: int):
        from tokenizers import Tokenizer
        from tokenizers.models import WordLevel
        from tokenizers.pre_tokenizers import Whitespace

        vocab = {w: i for i, w in enumerate(("<pad>", "<bos>", "<eos>", "<unk>") + tuple(words))}
        self.tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
        self.tok.pre_tokenizer = Whitespace()
        self.max_length = max_length
        self.vocab_size = len(vocab)

    def __call__(self, captions: list[str]) -> torch.Tensor:
        out = torch.zeros(len(captions), self.max_length, dtype=torch.long)
        for i, enc in enumerate(self.tok.encode_batch(list(captions))):
            if 3 in enc.ids:
                raise BenchError(f"caption {captions[i]!r} has words outside the tiny tokenizer's vocabulary")
            ids = [1] + enc.ids[: self.max_length - 2] + [2]
            out[i, : len(ids)] = torch.tensor(ids)
        return out


class ClipTokenizer:
    def __init__(self, ref: HubRef, max_length: int):
        from transformers import CLIPTokenizer

        try:
            self.tok = CLIPTokenizer.from_pretrained(ref.repo, subfolder="tokenizer", revision=ref.revision)
        except Exception as exc:
            raise offline_error("tokenizer", ref, exc) from None
        self.max_length = max_length

    def __call__(self, captions: list[str]) -> torch.Tensor:
        return self.tok(list(captions), padding="max_length", max_length=self.max_length, truncation=True,
                        return_tensors="pt").input_ids


def make_tokenizer(config: dict[str, Any], ref: HubRef | None):
    tk = config.get("tokenizer", {"kind": "words", "max_length": 16})
    if tk["kind"] == "words":
        from bench.data.layouts import WORDS

        # extra_words go after the source's words, so every source id is unchanged: a word added
        # here (a few-shot task's rare token) gets an embedding row the source never trained.
        return WordTokenizer(WORDS + tuple(tk.get("extra_words", ())), tk["max_length"])
    if ref is None:
        raise BenchError("a CLIP tokenizer needs the backbone's hub reference (`pretrained`)")
    return ClipTokenizer(ref, tk["max_length"])


class SDBackbone(Backbone):
    kind = "sd"
    cond_keys = ("input_ids",)
    with_controlnet: ClassVar[bool] = False
    groups: ClassVar[dict[str, str]] = {
        "unet": "the whole UNet",
        "text_encoder": "the text encoder",
        "blocks": "the UNet's down, mid and up blocks",
        "attention": "every UNet attention module (self- and cross-attention)",
        "cross_attention": "the UNet's cross-attention modules (attn2: text to image)",
        "norms": "UNet normalisation layers with affine parameters (GroupNorm, LayerNorm)",
    }

    def __init__(self, model, vae, vae_scaling_factor, weights_sha256, tokenizer=None):
        super().__init__(model, vae, vae_scaling_factor, weights_sha256)
        self.tokenizer = tokenizer

    # -- the common interface -------------------------------------------------------------------
    def output(self, x, t, cond: Cond, model=None):
        return (model if model is not None else self.model)(x, t, cond["input_ids"], cond.get("control"))

    def tokenize(self, captions: list[str]) -> torch.Tensor:
        return self.tokenizer(captions)

    @property
    def empty_ids(self) -> torch.Tensor:
        return self.tokenize([""])[0]

    def null_cond(self, cond: Cond) -> Cond:
        # The empty prompt; the spatial condition stays (ControlNet's guidance keeps it in both branches).
        ids = self.empty_ids.to(cond["input_ids"].device).expand_as(cond["input_ids"])
        return {**cond, "input_ids": ids}

    @property
    def channels(self) -> int:
        return self.model.unet.config.in_channels

    @property
    def sample_size(self) -> int:
        return self.model.unet.config.sample_size

    @property
    def learned_sigma(self) -> bool:
        return self.model.unet.config.out_channels == 2 * self.model.unet.config.in_channels

    def module_group(self, name: str):
        from diffusers.models.attention_processor import Attention

        unet = self.model.unet
        named = [(f"unet.{n}", m) for n, m in unet.named_modules()]
        if name == "controlnet":
            if self.model.controlnet is None:
                raise BenchError(f"backbone kind {self.kind!r} has no ControlNet")
            return [("controlnet", self.model.controlnet)]
        if name == "unet":
            return [("unet", unet)]
        if name == "text_encoder":
            return [("text_encoder", self.model.text_encoder)]
        if name == "blocks":
            return ([(f"unet.down_blocks.{i}", b) for i, b in enumerate(unet.down_blocks)]
                    + [("unet.mid_block", unet.mid_block)]
                    + [(f"unet.up_blocks.{i}", b) for i, b in enumerate(unet.up_blocks)])
        if name == "attention":
            return [(n, m) for n, m in named if isinstance(m, Attention)]
        if name == "cross_attention":
            return [(n, m) for n, m in named if isinstance(m, Attention) and n.endswith("attn2")]
        if name == "norms":
            norms = (nn.GroupNorm, nn.LayerNorm)
            return [(n, m) for n, m in named if isinstance(m, norms) and any(True for _ in m.parameters(recurse=False))]
        return self.group(name)

    # -- building and loading -------------------------------------------------------------------
    @classmethod
    def config_kwargs(cls, config):
        return resolve(config)

    @classmethod
    def architecture(cls, spec: BackboneSpec) -> dict[str, Any]:
        if not spec.config:
            raise BenchError(f"backbone kind {cls.kind!r} needs its architecture `config` (or `preset: sd15`)")
        return resolve(spec.config)

    @classmethod
    def build(cls, kwargs: dict[str, Any]) -> TextToImage:
        from diffusers import UNet2DConditionModel
        from transformers import CLIPTextConfig, CLIPTextModel

        unet = UNet2DConditionModel(**kwargs["unet"])
        text_encoder = CLIPTextModel(CLIPTextConfig(**kwargs["text_encoder"]))
        return TextToImage(unet, text_encoder)

    @classmethod
    def extend(cls, model, kwargs):
        if cls.with_controlnet:  # seeded by the runner: the conditioning encoder's first layers are random
            model.controlnet = make_controlnet(model.unet, kwargs)
        return model

    @classmethod
    def finalize(cls, model, loaded: bool):
        # The text encoder is frozen in every method (ControlNet, DreamBooth-style fine-tuning);
        # only the tiny source's pre-training (bench/tiny_build.py) trains it.
        model.text_encoder.requires_grad_(False)
        return model

    @classmethod
    def hub_refs(cls, spec):
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel

        ref = spec.pretrained
        refs = []
        if ref is not None:
            refs += [("UNet", UNet2DConditionModel, ref.model_copy(update={"subfolder": "unet"})),
                     ("text encoder", CLIPTextModel, ref.model_copy(update={"subfolder": "text_encoder"}))]
        if spec.vae is not None:
            refs.append(("VAE", AutoencoderKL, spec.vae))
        return refs

    @classmethod
    def load(cls, spec: BackboneSpec) -> "SDBackbone":
        kwargs = cls.architecture(spec)
        if spec.weights is not None:
            path, digest = verified_weights_file(spec)
            from safetensors.torch import load_file

            model = cls.build(kwargs)  # the file is the text-to-image model; `extend` adds the ControlNet
            model.load_state_dict(load_file(path))
        else:
            from diffusers import UNet2DConditionModel
            from transformers import CLIPTextModel

            ref = spec.pretrained
            try:
                unet = UNet2DConditionModel.from_pretrained(ref.repo, subfolder="unet", revision=ref.revision)
                text = CLIPTextModel.from_pretrained(ref.repo, subfolder="text_encoder", revision=ref.revision)
            except Exception as exc:
                raise offline_error("backbone", ref, exc) from None
            model = TextToImage(unet, text)
            digest = state_sha256(model.state_dict())
        model = cls.extend(cls.finalize(model, loaded=True), kwargs)
        return cls(model, load_vae(spec), spec.vae_scaling_factor, digest, make_tokenizer(kwargs, spec.pretrained))

    @classmethod
    def wrap_without_weights(cls, model, spec: BackboneSpec) -> "SDBackbone":
        kwargs = cls.architecture(spec)
        tokenizer = make_tokenizer(kwargs, spec.pretrained) if kwargs.get("tokenizer", {}).get("kind", "words") == "words" \
            else None
        return cls(model, None, spec.vae_scaling_factor, "architecture-only", tokenizer)


def make_controlnet(unet, kwargs: dict[str, Any]):
    from diffusers import ControlNetModel

    channels = tuple(kwargs.get("controlnet", {}).get("conditioning_embedding_out_channels", (16, 32, 96, 256)))
    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=channels)


class SDControlNetBackbone(SDBackbone):
    kind = "sd-controlnet"
    base_kind = "sd"
    cond_keys = ("input_ids", "control")
    with_controlnet = True

    @classmethod
    def base_config(cls, config):
        return {k: v for k, v in config.items() if k != "controlnet"}
    groups: ClassVar[dict[str, str]] = {
        "controlnet": "the ControlNet (trainable copy of the UNet encoder, zero convolutions, conditioning encoder)",
        **SDBackbone.groups,
    }
