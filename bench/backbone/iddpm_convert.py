"""Released improved-diffusion (openai/improved-diffusion) UNet checkpoints -> UNet2DModel keys.

The original numbers its modules sequentially: `input_blocks.0` is the input conv, then per level
`num_res_blocks` blocks of [ResBlock, AttentionBlock?] and, except at the last level, one
Downsample block; `middle_block` is [ResBlock, AttentionBlock, ResBlock]; `output_blocks` has
`num_res_blocks + 1` blocks per level, [ResBlock, AttentionBlock?, Upsample?], the Upsample
closing every level but the last. diffusers' UNet2DModel has the same modules grouped per level,
so the walk below is a renaming except for attention:

- qkv is one 1x1 Conv1d (3C, C, 1) whose rows are ordered head by head, [q_h, k_h, v_h] for each
  head h (improved-diffusion reshapes to (batch*heads, 3*C/heads, T) before splitting q, k, v);
  diffusers' to_q / to_k / to_v are separate (C, C) Linears with the heads contiguous inside each.
  Splitting in three without undoing the interleave is right only for one head.
- proj_out (C, C, 1) is to_out.0 (C, C).
The attention scale needs no conversion: improved-diffusion scales q and k by ch^-1/4 each, i.e.
the logits by 1/sqrt(ch) with ch = C/heads, what diffusers does with `heads` set (unet2d.py).

Which levels carry attention is read from the block types (`Attn*Block2D`), so `config` is the
UNet2DModel config the result will be loaded into (a `preset` is expanded).
"""

from __future__ import annotations

import torch

from bench.backbone.unet2d import resolve_config
from bench.errors import BenchError

_RESNET = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
           "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}


def convert_iddpm_state_dict(sd: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    cfg = resolve_config(config)
    heads = cfg.get("num_attention_heads") or 1
    n, down, up = cfg["layers_per_block"], cfg["down_block_types"], cfg["up_block_types"]
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in sd:
            raise BenchError(f"improved-diffusion checkpoint has no {key!r}: it does not match the config "
                             f"(channels, res blocks, attention levels)")
        used.add(key)
        return sd[key]

    def move(old: str, new: str) -> None:
        for p in ("weight", "bias"):
            out[f"{new}.{p}"] = take(f"{old}.{p}")

    def resnet(old: str, new: str) -> None:
        for o, d in _RESNET.items():
            if o != "skip_connection" or f"{old}.{o}.weight" in sd:  # a 1x1 conv only where widths change
                move(f"{old}.{o}", f"{new}.{d}")

    def attention(old: str, new: str) -> None:
        move(f"{old}.norm", f"{new}.group_norm")
        w, b = take(f"{old}.qkv.weight"), take(f"{old}.qkv.bias")
        c = w.shape[1]
        w, b = w.reshape(heads, 3, c // heads, c), b.reshape(heads, 3, c // heads)
        for i, name in enumerate(("to_q", "to_k", "to_v")):
            out[f"{new}.{name}.weight"] = w[:, i].reshape(c, c).contiguous()
            out[f"{new}.{name}.bias"] = b[:, i].reshape(c).contiguous()
        out[f"{new}.to_out.0.weight"] = take(f"{old}.proj_out.weight").squeeze(-1)
        out[f"{new}.to_out.0.bias"] = take(f"{old}.proj_out.bias")

    move("time_embed.0", "time_embedding.linear_1")
    move("time_embed.2", "time_embedding.linear_2")
    move("input_blocks.0.0", "conv_in")
    k = 1
    for i, kind in enumerate(down):
        for j in range(n):
            resnet(f"input_blocks.{k}.0", f"down_blocks.{i}.resnets.{j}")
            if kind.startswith("Attn"):
                attention(f"input_blocks.{k}.1", f"down_blocks.{i}.attentions.{j}")
            k += 1
        if i < len(down) - 1:
            move(f"input_blocks.{k}.0.op", f"down_blocks.{i}.downsamplers.0.conv")
            k += 1
    resnet("middle_block.0", "mid_block.resnets.0")
    attention("middle_block.1", "mid_block.attentions.0")
    resnet("middle_block.2", "mid_block.resnets.1")
    k = 0
    for i, kind in enumerate(up):
        attn = kind.startswith("Attn")
        for j in range(n + 1):
            resnet(f"output_blocks.{k}.0", f"up_blocks.{i}.resnets.{j}")
            if attn:
                attention(f"output_blocks.{k}.1", f"up_blocks.{i}.attentions.{j}")
            k += 1
        if i < len(up) - 1:
            move(f"output_blocks.{k - 1}.{2 if attn else 1}.conv", f"up_blocks.{i}.upsamplers.0.conv")
    move("out.0", "conv_norm_out")
    move("out.2", "conv_out")

    left = sorted(set(sd) - used)
    if left:
        raise BenchError(f"improved-diffusion checkpoint tensors not mapped by the config: {left[:4]} "
                         f"({len(left)} in all); check channels, res blocks and attention levels")
    return out
