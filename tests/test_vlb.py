"""The hybrid loss's VLB term (bench/vlb.py), the trainer's `train.loss`, and sampling with a
learned variance."""

from __future__ import annotations

import math

import pytest
import torch

from bench.backbone import noise_schedule
from bench.backbone.unet2d import UNet2DBackbone, build_unet
from bench.errors import BenchError
from bench.sampling import sample
from bench.spec import DiffusionSpec, TrainSpec
from bench.trainer import diffusion_loss
from bench.vlb import vlb_term

TINY = {"sample_size": 8, "in_channels": 3, "out_channels": 6, "block_out_channels": [32, 32], "layers_per_block": 1,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
        "attention_head_dim": None, "norm_num_groups": 8, "attn_norm_num_groups": 8}
SCHED = noise_schedule(DiffusionSpec(beta_schedule="squaredcos_cap_v2"))


def _posterior_log_var(t: int) -> float:
    """beta~_t from the schedule's own alphas, independently of bench/vlb.py."""
    abar = SCHED.alphas_cumprod.double()
    return math.log(float(SCHED.betas[t]) * float(1 - abar[t - 1]) / float(1 - abar[t]))


def test_vlb_is_zero_for_the_true_noise_and_the_posterior_variance():
    torch.manual_seed(0)
    x0, noise = torch.rand(4, 3, 8, 8) * 2 - 1, torch.randn(4, 3, 8, 8)
    t = torch.tensor([1, 10, 500, 999])
    x_t = SCHED.add_noise(x0, noise, t)
    v = -torch.ones_like(x0)  # learned range: v = -1 is exactly the posterior variance
    assert vlb_term(SCHED, x0, x_t, t, noise, v).abs().max() < 1e-4
    # a variance off by a factor e^{d} costs KL = (e^{d} - 1 - d)/2 nats per dimension, whatever the data
    v = torch.ones_like(x0)  # beta_t instead of beta~_t
    d = torch.tensor([math.log(float(SCHED.betas[k])) - _posterior_log_var(int(k)) for k in t])
    expected = 0.5 * (torch.exp(-d) - 1 + d) / math.log(2)
    assert torch.allclose(vlb_term(SCHED, x0, x_t, t, noise, v), expected.float(), rtol=1e-3, atol=1e-6)


def test_vlb_trains_the_variance_only_and_t0_is_the_decoder_nll():
    x0 = torch.rand(2, 3, 8, 8) * 2 - 1
    eps = torch.randn(2, 3, 8, 8, requires_grad=True)
    v = torch.zeros(2, 3, 8, 8, requires_grad=True)
    t = torch.tensor([0, 300])
    out = vlb_term(SCHED, x0, SCHED.add_noise(x0, torch.randn_like(x0), t), t, eps, v)
    out.sum().backward()
    assert eps.grad is None and v.grad is not None and v.grad.abs().sum() > 0
    assert out[0] > 0 and torch.isfinite(out).all()  # -log2 p(x0 | x1) per dimension, at most 8 bits
    assert out[0] < 8.0


def _backbone():
    torch.manual_seed(0)
    return UNet2DBackbone(build_unet(TINY), None, 1.0, "test")


def _one_step(loss: str | None) -> torch.Tensor:
    backbone = _backbone()
    spec = TrainSpec(batch_size=4, steps=1, lr=1e-2, checkpoint_every=1, loss=loss)
    opt = torch.optim.SGD(backbone.model.parameters(), lr=1e-2)
    torch.manual_seed(1)
    batch = {"x0": torch.rand(4, 3, 8, 8) * 2 - 1}
    diffusion_loss(backbone, SCHED, batch, torch.randint(0, 1000, (4,)), spec).mean().backward()
    before = backbone.model.conv_out.weight.detach().clone()
    opt.step()
    return (backbone.model.conv_out.weight.detach() - before).flatten(1).abs().sum(1)


def test_hybrid_loss_trains_the_variance_channels_and_simple_does_not():
    simple, hybrid = _one_step(None), _one_step("hybrid")
    assert simple[:3].sum() > 0 and simple[3:].sum() == 0  # the variance rows of conv_out
    assert hybrid[3:].sum() > 0 and torch.allclose(hybrid[:3], simple[:3])  # the mean is trained by the MSE alone


def test_hybrid_loss_needs_learned_sigma():
    backbone = UNet2DBackbone(build_unet({**TINY, "out_channels": 3}), None, 1.0, "test")
    spec = TrainSpec(batch_size=2, steps=1, lr=1e-3, checkpoint_every=1, loss="hybrid")
    with pytest.raises(BenchError, match="learned-sigma"):
        diffusion_loss(backbone, SCHED, {"x0": torch.zeros(2, 3, 8, 8)}, torch.tensor([1, 2]), spec)


def test_ddpm_sampling_reads_the_learned_variance_and_ddim_does_not():
    backbone = _backbone()
    kw = dict(diffusion=DiffusionSpec(beta_schedule="squaredcos_cap_v2"), steps=5, guidance_scale=1.0,
              batch_size=4, seed=0)
    ddpm, ddim = sample(backbone, 4, scheduler="ddpm", **kw), sample(backbone, 4, scheduler="ddim", **kw)
    with torch.no_grad():
        backbone.model.conv_out.weight[3:] += 0.5  # move the variance channels only
        backbone.model.conv_out.bias[3:] += 0.5
    assert not torch.equal(sample(backbone, 4, scheduler="ddpm", **kw), ddpm)
    assert torch.equal(sample(backbone, 4, scheduler="ddim", **kw), ddim)
    assert ddpm.shape == (4, 8, 8, 3) and ddpm.dtype == torch.uint8
