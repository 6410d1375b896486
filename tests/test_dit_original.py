"""dit-transfer's paper profile computes as the original DiT (facebookresearch/DiT), where diffusers'
DiTTransformer2DModel and schedulers differ (issue 30, item 3):

(a) the sinusoidal timestep embedding (models.py, TimestepEmbedder.timestep_embedding);
(b) classifier-free guidance on 3 of the 4 noise channels (models.py, DiT.forward_with_cfg);
(c) the pre-MLP LayerNorm's eps, 1e-6 (models.py, DiTBlock.norm2);
(d) the 250-step respacing (diffusion/respace.py, space_timesteps) and the DDPM step on it
    (diffusion/gaussian_diffusion.py, p_sample with the learned-range variance).

Each official formula is re-implemented here from the official code, independently of bench/, and
checked against the backbone built from the paper profile as the task file declares it (on a tiny
random-weight DiT: no downloads), so reverting a setting in the task file fails its test. The tiny
profile keeps diffusers' defaults (its DiT is pre-trained from scratch here under them; its
committed results depend on them), which each test also pins.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.backbone import adapter_class, load_backbone
from bench.sampling import dit_timesteps, guided_output, make_scheduler
from bench.tasks import load_task

# A DiT-XL/2-shaped miniature: 4 latent channels, learned sigma (8 outputs), adaLN-Zero.
CONFIG = dict(num_layers=2, num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
              patch_size=2, sample_size=4, num_embeds_ada_norm=10, norm_type="ada_norm_zero")


def backbone_of(profile: str):
    """The profile's backbone spec as the task file declares it, on the miniature architecture with
    random weights (every parameter drawn, so no branch is zero)."""
    spec = load_task("dit-transfer", profile).spec.backbone.model_copy(update={
        "pretrained": None, "weights": None, "weights_sha256": None, "vae": None, "from_scratch": True,
        "config": CONFIG, "num_source_classes": 10})
    torch.manual_seed(0)
    backbone = adapter_class("dit").from_scratch(spec)
    with torch.no_grad():
        for p in backbone.model.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return backbone.to("cpu")


# -- (a) timestep embedding -----------------------------------------------------------------------

def official_timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000) -> torch.Tensor:
    """facebookresearch/DiT models.py, TimestepEmbedder.timestep_embedding (dim even): frequencies
    exp(-ln(max_period) * i / half) for i < half, then [cos, sin]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


T_PROBE = torch.tensor([0, 1, 4, 17, 250, 500, 998, 999])


def test_paper_profile_timestep_embedding_is_the_original_dits():
    emb = backbone_of("paper").model.transformer_blocks[0].norm1.emb
    ref = official_timestep_embedding(T_PROBE, 256)
    torch.testing.assert_close(emb.time_proj(T_PROBE), ref, rtol=0, atol=1e-6)
    # ... and it is what conditions every block: timestep MLP of it + the label row.
    y = torch.tensor([0, 1, 2, 3, 4, 5, 6, 10])
    with torch.no_grad():
        want = emb.timestep_embedder(ref) + emb.class_embedder.embedding_table(y)
        torch.testing.assert_close(emb(T_PROBE, y), want, rtol=1e-6, atol=1e-6)


def test_tiny_profile_keeps_diffusers_timestep_embedding():
    """Not the original's: diffusers divides by half - 1 (127 for 256 channels)."""
    emb = backbone_of("tiny").model.transformer_blocks[0].norm1.emb
    assert (emb.time_proj(T_PROBE) - official_timestep_embedding(T_PROBE, 256)).abs().max() > 1e-2
    half = 128
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / (half - 1))
    args = T_PROBE[:, None].float() * freqs[None]
    torch.testing.assert_close(emb.time_proj(T_PROBE), torch.cat([args.cos(), args.sin()], -1), rtol=0, atol=1e-6)


def test_a_loaded_paper_backbone_gets_the_original_numerics_too(tmp_path):
    """Pre-trained weights are loaded (from_pretrained, as the hub weights), then configured."""
    from diffusers import DiTTransformer2DModel

    torch.manual_seed(0)
    dit = DiTTransformer2DModel(**CONFIG)
    for block in dit.transformer_blocks[1:]:  # a converted original DiT: one condition embedder, copied
        block.norm1.emb.load_state_dict(dit.transformer_blocks[0].norm1.emb.state_dict())
    dit.save_pretrained(tmp_path / "transformer")
    spec = load_task("dit-transfer", "paper").spec.backbone.model_copy(update={
        "pretrained": load_task("dit-transfer", "paper").spec.backbone.pretrained.model_copy(
            update={"repo": str(tmp_path), "revision": "main"}), "vae": None, "num_source_classes": 10})
    backbone = load_backbone(spec)
    emb = backbone.model.transformer_blocks[0].norm1.emb
    torch.testing.assert_close(emb.time_proj(T_PROBE), official_timestep_embedding(T_PROBE, 256), rtol=0, atol=1e-6)
    assert all(b.norm3.eps == 1e-6 for b in backbone.model.transformer_blocks)
    assert backbone.guidance_channels == 3
    # Samples, banks and Fishers of the same weights under other numerics are cached apart.
    assert backbone.weights_key != backbone.weights_sha256


# -- (b) classifier-free guidance -----------------------------------------------------------------

def official_forward_with_cfg(forward, x, t, y, cfg_scale: float) -> torch.Tensor:
    """facebookresearch/DiT models.py, DiT.forward_with_cfg: the batch is [conditional; null] of
    the same noise; only channels :3 of the output are guided, the rest (noise channel 3 and the
    variance) are each half's own. sample.py then keeps the first (conditional) half."""
    half = x[: len(x) // 2]
    out = forward(torch.cat([half, half]), t, y)
    eps, rest = out[:, :3], out[:, 3:]
    cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
    half_eps = uncond_eps + cfg_scale * (cond_eps - uncond_eps)
    return torch.cat([torch.cat([half_eps, half_eps]), rest], dim=1)


def _guidance_inputs():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 4, 4, generator=g)
    return x, torch.tensor(517), torch.tensor([1, 4, 7])


def _official_guided(backbone, x, t, y, scale):
    def forward(xx, tt, yy):
        return backbone.model(xx, timestep=tt, class_labels=yy).sample

    n = len(x)
    both_y = torch.cat([y, torch.full_like(y, backbone.null_class)])
    with torch.no_grad():
        return official_forward_with_cfg(forward, torch.cat([x, x]), t.expand(2 * n), both_y, scale)[:n]


def test_paper_profile_guides_three_of_four_channels_as_the_original():
    backbone = backbone_of("paper")
    x, t, y = _guidance_inputs()
    ours = guided_output(backbone, backbone.model, x, t, {"y": y}, 1.5, keep_variance=True)
    want = _official_guided(backbone, x, t, y, 1.5)
    torch.testing.assert_close(ours, want, rtol=1e-5, atol=1e-6)
    # Without the variance (DDIM, or a model without learned sigma) the same 4 noise channels.
    torch.testing.assert_close(guided_output(backbone, backbone.model, x, t, {"y": y}, 1.5), want[:, :4],
                               rtol=1e-5, atol=1e-6)


def test_tiny_profile_guides_every_channel():
    backbone = backbone_of("tiny")
    assert backbone.guidance_channels is None
    x, t, y = _guidance_inputs()
    ours = guided_output(backbone, backbone.model, x, t, {"y": y}, 1.5)
    official = _official_guided(backbone, x, t, y, 1.5)[:, :4]
    torch.testing.assert_close(ours[:, :3], official[:, :3], rtol=1e-5, atol=1e-6)
    assert (ours[:, 3] - official[:, 3]).abs().max() > 1e-3  # channel 3 guided here, not there
    with torch.no_grad():
        out = backbone.model(torch.cat([x, x]), timestep=t.expand(6),
                             class_labels=torch.cat([y, torch.full_like(y, backbone.null_class)])).sample[:, :4]
    c, u = out.chunk(2)
    torch.testing.assert_close(ours, u + 1.5 * (c - u), rtol=1e-5, atol=1e-6)


# -- (c) pre-MLP LayerNorm eps --------------------------------------------------------------------

def test_paper_profile_pre_mlp_layernorm_has_the_original_eps():
    """Original DiTBlock: norm1 and norm2 (before the MLP) are LayerNorm(eps=1e-6, no affine).
    diffusers: adaLN-Zero's norm (the original's norm1) has 1e-6, the pre-MLP norm3 norm_eps = 1e-5.
    Checked numerically on tokens whose variance is of the order of eps, where the two differ."""
    paper, tiny = backbone_of("paper").model, backbone_of("tiny").model
    width = CONFIG["num_attention_heads"] * CONFIG["attention_head_dim"]
    x = torch.randn(2, 4, width, generator=torch.Generator().manual_seed(2)) * 1e-3  # variance ~1e-6
    want = torch.nn.functional.layer_norm(x, (width,), eps=1e-6)  # the original's norm2
    for block in paper.transformer_blocks:
        torch.testing.assert_close(block.norm3(x), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(block.norm1.norm(x), want, rtol=1e-5, atol=1e-5)  # unchanged: already 1e-6
    for block in tiny.transformer_blocks:
        assert block.norm3.eps == 1e-5
        assert (block.norm3(x) - want).abs().max() > 0.1


# -- (d) timestep respacing and the DDPM step on it -----------------------------------------------

def official_space_timesteps(num_timesteps: int, count: int) -> set[int]:
    """facebookresearch/DiT diffusion/respace.py, space_timesteps(num_timesteps, str(count)) with
    one section: a running index advanced by (num_timesteps - 1) / (count - 1), rounded."""
    stride = 1 if count <= 1 else (num_timesteps - 1) / (count - 1)
    taken, idx = [], 0.0
    for _ in range(count):
        taken.append(round(idx))
        idx += stride
    return set(taken)


def test_dit_respacing_matches_the_original_for_every_step_count():
    """Including the counts where i * stride lands on .5 exactly (21 of 1000: 499.5), which only the
    original's running sum rounds as it does."""
    for count in range(1, 1001):
        assert dit_timesteps(1000, count) == sorted(official_space_timesteps(1000, count), reverse=True), count


def test_paper_profile_samples_on_the_original_250_timesteps():
    spec = load_task("dit-transfer", "paper").spec
    assert spec.sampling.steps == spec.knowledge_bank.steps == 250
    for s in (spec.sampling, spec.knowledge_bank):
        sched = make_scheduler(s.scheduler, spec.diffusion, s.steps, learned_variance=True)
        ts = sched.timesteps.tolist()
        assert ts == sorted(official_space_timesteps(1000, 250), reverse=True)
        assert ts[0] == 999 and ts[-1] == 0 and len(ts) == 250
    tiny = load_task("dit-transfer", "tiny").spec.diffusion
    assert tiny.timestep_spacing is None
    assert make_scheduler("ddpm", tiny, 250).timesteps[0] == 996  # diffusers' "leading"


def _official_respaced_step(base_betas: np.ndarray, used: list[int], i: int, x, eps, v, noise):
    """One p_sample of the respaced diffusion at respaced index i (SpacedDiffusion over `used`,
    ascending), learned-range variance, clip_denoised=False (DiT's sample.py), in float64."""
    acp_base = np.cumprod(1.0 - base_betas)
    betas, last = [], 1.0
    for t in used:  # SpacedDiffusion.__init__: new betas from the kept alphas_cumprod
        betas.append(1 - acp_base[t] / last)
        last = acp_base[t]
    betas = np.array(betas)
    acp = np.cumprod(1.0 - betas)
    acp_prev = np.append(1.0, acp[:-1])
    post_var = betas * (1.0 - acp_prev) / (1.0 - acp)
    post_log_var_clipped = np.log(np.append(post_var[1], post_var[1:]))
    coef1 = betas * np.sqrt(acp_prev) / (1.0 - acp)
    coef2 = (1.0 - acp_prev) * np.sqrt(1.0 - betas) / (1.0 - acp)
    x, eps, v, noise = (a.double() for a in (x, eps, v, noise))
    x0 = math.sqrt(1.0 / acp[i]) * x - math.sqrt(1.0 / acp[i] - 1) * eps
    mean = coef1[i] * x0 + coef2[i] * x
    frac = (v + 1) / 2
    log_var = frac * math.log(betas[i]) + (1 - frac) * post_log_var_clipped[i]
    return mean + (i != 0) * torch.exp(0.5 * log_var) * noise


@pytest.mark.parametrize("position", [0, 1, 125, 248, 249])  # 999 -> 995, ..., a 5-wide gap, ..., 4 -> 0
def test_paper_profile_ddpm_step_is_the_original_respaced_p_sample(position):
    spec = load_task("dit-transfer", "paper").spec
    sched = make_scheduler("ddpm", spec.diffusion, 250, learned_variance=True)
    t = sched.timesteps[position]
    used = sorted(official_space_timesteps(1000, 250))
    i = used.index(int(t))
    g = torch.Generator().manual_seed(3)
    x, eps = torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 4, 4, 4, generator=g)
    v = torch.rand(2, 4, 4, 4, generator=g) * 2 - 1
    out = sched.step(torch.cat([eps, v], 1), t, x, generator=torch.Generator().manual_seed(4)).prev_sample
    noise = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(4))
    base = np.linspace(spec.diffusion.beta_start, spec.diffusion.beta_end, 1000)  # DiT's "linear" schedule
    want = _official_respaced_step(base, used, i, x, eps, v, noise)
    torch.testing.assert_close(out.double(), want, rtol=2e-4, atol=2e-5)


def test_dit_spacing_refuses_samplers_that_step_by_a_fixed_stride():
    from bench.errors import BenchError

    spec = load_task("dit-transfer", "paper").spec
    with pytest.raises(BenchError, match="DDPM"):
        make_scheduler("ddim", spec.diffusion, 50)
    with pytest.raises(Exception, match="needs the ddpm scheduler"):
        load_task("dit-transfer", "paper").with_overrides({"sampling.scheduler": "ddim"})
