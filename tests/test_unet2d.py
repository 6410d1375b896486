"""The unet2d backbone adapter, the iDDPM ImageNet-64 architecture and the improved-diffusion
checkpoint converter.

`IDDPM` below re-creates improved-diffusion's UNetModel (unet.py) with the same module names, so
its state dict has the released checkpoints' keys and shapes, and its forward is the reference the
converted UNet2DModel must reproduce (written from the original's structure, use_scale_shift_norm
on, conv resampling, legacy head-interleaved qkv).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.backbone import adapter_class
from bench.backbone.iddpm_convert import convert_iddpm_state_dict
from bench.backbone.unet2d import IDDPM_IMAGENET64, UNet2DBackbone, build_unet
from bench.errors import BenchError
from bench.spec import BackboneSpec

# A small iDDPM-like model: 32 channels, mult (1, 2), 1 res block, attention at 8 px (ds 2) with
# 2 heads (so the qkv head interleave matters), 16x16 input, learned sigma.
SMALL = {"sample_size": 16, "in_channels": 3, "out_channels": 6, "block_out_channels": [32, 64],
         "layers_per_block": 1, "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
         "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "attention_head_dim": None, "num_attention_heads": 2,
         "attn_norm_num_groups": 32, "resnet_time_scale_shift": "scale_shift"}
SMALL_IDDPM = dict(ch=32, mult=(1, 2), n=1, attn_ds=(2,), heads=2)
IMAGENET64_IDDPM = dict(ch=128, mult=(1, 2, 3, 4), n=3, attn_ds=(4, 8), heads=4)  # attention at 16 and 8 px


class _Seq(nn.Sequential):  # TimestepEmbedSequential: every layer takes (x, emb)
    def forward(self, x, emb):
        for layer in self:
            x = layer(x, emb) if isinstance(layer, (_Res, _Attn, _Down, _Up)) else layer(x)
        return x


class _Res(nn.Module):
    def __init__(self, cin, emb, cout):
        super().__init__()
        self.in_layers = nn.Sequential(nn.GroupNorm(32, cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb, 2 * cout))
        self.out_layers = nn.Sequential(nn.GroupNorm(32, cout), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(cout, cout, 3, padding=1))
        self.skip_connection = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x, emb):
        scale, shift = self.emb_layers(emb)[..., None, None].chunk(2, dim=1)
        h = self.out_layers[0](self.in_layers(x)) * (1 + scale) + shift
        return self.skip_connection(x) + self.out_layers[1:](h)


class _Attn(nn.Module):
    def __init__(self, c, heads):
        super().__init__()
        self.heads, self.norm = heads, nn.GroupNorm(32, c)
        self.qkv, self.proj_out = nn.Conv1d(c, 3 * c, 1), nn.Conv1d(c, c, 1)

    def forward(self, x, emb):
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x)).reshape(b * self.heads, -1, x.shape[-1])  # per head: [q, k, v]
        q, k, v = qkv.split(c // self.heads, dim=1)
        s = (c // self.heads) ** -0.25
        w = torch.softmax(torch.einsum("bct,bcs->bts", q * s, k * s), dim=-1)
        h = torch.einsum("bts,bcs->bct", w, v).reshape(b, c, -1)
        return (x + self.proj_out(h)).reshape(b, c, *spatial)


class _Down(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.op = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, x, emb):
        return self.op(x)


class _Up(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x, emb):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class IDDPM(nn.Module):
    def __init__(self, ch, mult, n, attn_ds, heads, cin=3, cout=6):
        super().__init__()
        self.ch, emb = ch, 4 * ch
        self.time_embed = nn.Sequential(nn.Linear(ch, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.input_blocks = nn.ModuleList([_Seq(nn.Conv2d(cin, ch, 3, padding=1))])
        chans, c, ds = [ch], ch, 1
        for level, m in enumerate(mult):
            for _ in range(n):
                layers, c = [_Res(c, emb, m * ch)], m * ch
                layers += [_Attn(c, heads)] if ds in attn_ds else []
                self.input_blocks.append(_Seq(*layers))
                chans.append(c)
            if level < len(mult) - 1:
                self.input_blocks.append(_Seq(_Down(c)))
                chans.append(c)
                ds *= 2
        self.middle_block = _Seq(_Res(c, emb, c), _Attn(c, heads), _Res(c, emb, c))
        self.output_blocks = nn.ModuleList()
        for level, m in reversed(list(enumerate(mult))):
            for i in range(n + 1):
                layers, c = [_Res(c + chans.pop(), emb, m * ch)], m * ch
                layers += [_Attn(c, heads)] if ds in attn_ds else []
                if level and i == n:
                    layers.append(_Up(c))
                    ds //= 2
                self.output_blocks.append(_Seq(*layers))
        self.out = nn.Sequential(nn.GroupNorm(32, c), nn.SiLU(), nn.Conv2d(ch, cout, 3, padding=1))

    def forward(self, x, t):
        half = self.ch // 2
        args = t[:, None].float() * torch.exp(-math.log(10000) * torch.arange(half) / half)[None]
        emb = self.time_embed(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))
        hs, h = [], x
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)


def test_converter_maps_every_key_shape_for_shape_and_the_forward_matches():
    torch.manual_seed(0)
    ref = IDDPM(**SMALL_IDDPM).eval()  # random weights everywhere (no zero-init), so every tensor matters
    converted = convert_iddpm_state_dict(ref.state_dict(), SMALL)
    model = build_unet(SMALL).eval()
    target = model.state_dict()
    assert set(converted) == set(target)
    assert all(converted[k].shape == target[k].shape for k in target)
    model.load_state_dict(converted, strict=True)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([3, 870])
    with torch.no_grad():
        expected, got = ref(x, t), model(x, t).sample
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4), (got - expected).abs().max()


def test_converter_refuses_a_checkpoint_that_does_not_fit_the_config():
    sd = IDDPM(**SMALL_IDDPM).state_dict()
    with pytest.raises(BenchError, match="not mapped"):
        convert_iddpm_state_dict({**sd, "label_emb.weight": torch.zeros(10, 128)}, SMALL)
    with pytest.raises(BenchError, match="has no"):
        convert_iddpm_state_dict(sd, {**SMALL, "layers_per_block": 2})


def test_imagenet64_architecture_matches_improved_diffusion_and_the_paper():
    """Shapes only (meta tensors). The paper (A3FT App. C.2): 15 attention and 30 residual blocks,
    ~120M parameters. diffusers' layout is the original's: its up blocks hold num_res_blocks + 1
    resnets, as improved-diffusion's output levels do, and resampling is a plain conv in both."""
    with torch.device("meta"):
        ref = IDDPM(**IMAGENET64_IDDPM)
        model = build_unet(IDDPM_IMAGENET64)
    converted = convert_iddpm_state_dict(ref.state_dict(), IDDPM_IMAGENET64)
    target = model.state_dict()
    assert set(converted) == set(target)
    assert all(converted[k].shape == target[k].shape for k in target)
    backbone = UNet2DBackbone(model, None, 1.0, "architecture-only")
    attention, resnets = backbone.module_group("attention"), backbone.module_group("resnets")
    total = sum(p.numel() for p in model.parameters())
    print(f"iDDPM ImageNet-64: {len(attention)} attention, {len(resnets)} residual blocks, {total:,} parameters")
    assert (len(attention), len(resnets)) == (15, 30)
    assert total == sum(p.numel() for p in ref.parameters())
    assert 115e6 < total < 125e6
    widths = sorted({m.to_out[0].in_features for _, m in attention})
    assert widths == [384, 512]  # the two widths A3FT shares its modules over
    assert all(m.heads == 4 and m.scale == (m.inner_dim // 4) ** -0.5 for _, m in attention)


def test_backbone_groups_predict_and_meta_build():
    model = build_unet(SMALL)
    backbone = UNet2DBackbone(model, None, 1.0, "test")
    assert backbone.cond_keys == () and backbone.null_cond({}) == {}
    assert [n for n, _ in backbone.module_group("blocks")] == ["down_blocks.0", "down_blocks.1", "mid_block",
                                                                "up_blocks.0", "up_blocks.1"]
    assert len(backbone.group("attention")) == 1 + 1 + 2  # down level 1, mid, up level 0
    assert len(backbone.group("resnets")) == 2 + 2 + 4
    assert all(isinstance(m, (nn.GroupNorm, nn.LayerNorm)) for m in backbone.group("norms"))
    assert [n for n, _ in backbone.module_group("output")] == ["conv_norm_out", "conv_out"]
    with pytest.raises(BenchError, match="no module group"):
        backbone.group("mlp")
    eps = backbone.predict(torch.randn(2, 3, 16, 16), torch.tensor([1, 2]), {})
    assert eps.shape == (2, 3, 16, 16)  # learned-sigma channels dropped
    spec = BackboneSpec(kind="unet2d", weights="x.safetensors", config={"preset": "iddpm-imagenet64"})
    meta = adapter_class("unet2d").build_without_weights(spec)
    assert next(meta.parameters()).is_meta and list(meta.config.block_out_channels) == [128, 256, 384, 512]


def test_load_checks_the_weights_hash(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from bench.backbone.base import file_sha256

    monkeypatch.setattr("bench.backbone.base.ASSETS_DIR", tmp_path)
    model = build_unet(SMALL)
    save_file(model.state_dict(), tmp_path / "u.safetensors")
    digest = file_sha256(tmp_path / "u.safetensors")
    loaded = UNet2DBackbone.load(BackboneSpec(kind="unet2d", weights="u.safetensors", weights_sha256=digest,
                                              config=SMALL))
    assert all(torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(), model.state_dict().values()))
    assert loaded.weights_sha256 == digest and loaded.group("attention")[0].heads == 2
    with pytest.raises(BenchError, match="sha256"):
        UNet2DBackbone.load(BackboneSpec(kind="unet2d", weights="u.safetensors", weights_sha256="0" * 64,
                                         config=SMALL))


def test_convert_iddpm_cli_writes_weights_that_reproduce_the_original(tmp_path):
    import json

    from safetensors.torch import load_file

    from conftest import bench_cli

    torch.manual_seed(1)
    ref = IDDPM(**SMALL_IDDPM).eval()
    torch.save(ref.state_dict(), tmp_path / "model.pt")
    out = tmp_path / "model.safetensors"
    proc = bench_cli("convert-iddpm", tmp_path / "model.pt", out, "--config", json.dumps(SMALL), check_rc=0)
    assert "sha256=" in proc.stdout
    model = build_unet(SMALL).eval()
    model.load_state_dict(load_file(out), strict=True)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([5, 400])
    with torch.no_grad():
        assert torch.allclose(model(x, t).sample, ref(x, t), atol=1e-4, rtol=1e-4)
    bad = bench_cli("convert-iddpm", tmp_path / "model.pt", tmp_path / "x.safetensors")  # ImageNet-64 preset
    assert bad.returncode != 0 and "does not match the config" in bad.stderr and not (tmp_path / "x.safetensors").exists()
