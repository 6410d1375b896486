"""Bayesian fine-tuning layers (baselines/bnn.py): sigma 0 is the converted layer exactly, twice the
parameters, the KL's zero, evaluation without sampling, and training through the shared trainer on
the limited-data tiny UNet."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from baselines.bnn import BayesianLinear, BayesianNorm
from bench.backbone import load_backbone, noise_schedule
from bench.families.limited_data import image_batch
from bench.method import TrainContext
from bench.data import synthetic
from bench.registry import build_method
from bench.spec import SyntheticDataset, TrainSpec
from bench.tasks import load_task
from bench.trainer import train

TASK = load_task("limited-data", "tiny")


def test_a_bayesian_linear_at_sigma_zero_is_the_linear_exactly():
    torch.manual_seed(0)
    lin = nn.Linear(8, 5)
    bay = BayesianLinear(lin, sigma=0.01)
    x = torch.randn(4, 8)
    bay.eval()  # evaluation: sigma 0, the mean weights
    assert torch.equal(bay(x), lin(x))
    bay.train()
    with torch.no_grad():
        bay.weight_sigma.zero_()
        bay.bias_sigma.zero_()
    assert torch.allclose(bay(x), lin(x), atol=1e-5)
    with torch.no_grad():
        bay.weight_sigma.fill_(0.5)
    a, b = bay(x), bay(x)
    assert not torch.equal(a, b)  # a fresh weight every forward pass in training


def test_parameters_double_and_the_kl_is_zero_at_the_prior():
    lin = nn.Linear(8, 5)
    bay = BayesianLinear(lin, sigma=0.01)
    assert sum(p.numel() for p in bay.parameters()) == 2 * sum(p.numel() for p in lin.parameters())
    kl, n = bay.kl(prior_sigma=0.01)
    assert n == 45 and abs(kl.item()) < 1e-9
    with torch.no_grad():
        bay.weight_mu.add_(0.1)
    assert bay.kl(prior_sigma=0.01)[0].item() > 0
    norm = nn.GroupNorm(2, 4)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(3, 4, 5, 5)
    want = norm(x)
    bnorm = BayesianNorm(norm, sigma=0.01).eval()
    assert torch.equal(bnorm(x), want)


def official_cal_kl(mu1, sigma1, mu2, sigma2):
    """bayesian.py `cal_KL` (KL(P1 || P2), P1 the prior), re-implemented: per-element terms,
    rounding negatives below -1e-7 set to zero, summed."""
    kl = torch.log(sigma2 / sigma1) + (-0.5 + 0.5 * (sigma1 / sigma2) ** 2) + 0.5 * (mu1 - mu2) ** 2 / sigma2**2
    kl = torch.where(kl < -1e-7, torch.zeros_like(kl), kl)
    return kl.sum()


def test_the_kl_is_the_official_sum_over_elements_and_modules_and_sigma_is_clamped_on_data():
    torch.manual_seed(0)
    bb = backbone()
    ctx = TrainContext(backbone=bb, dataset=None, num_timesteps=1000, batch_size=4)
    method = build_method("bnn", {"kl_weight": "1.0"}, family="limited-data")
    pre = {n: m for n, m in bb.model.named_modules() if isinstance(m, nn.Linear)}
    pre = {n: (m.weight.detach().clone(), m.bias.detach().clone() if m.bias is not None else None)
           for n, m in pre.items()}
    model = method.prepare(bb.model, ctx)
    layers = {n: m for n, m in model.named_modules() if isinstance(m, BayesianLinear)}
    assert len(layers) > 3
    with torch.no_grad():  # move means and sigmas away from the prior, differently per layer
        for i, m in enumerate(layers.values()):
            m.weight_mu.add_(torch.randn_like(m.weight_mu) * 0.01 * (i + 1))
            m.weight_sigma.mul_(torch.rand_like(m.weight_sigma) + 0.5)
            if "bias" in m.names:
                m.bias_mu.add_(0.003)
    prior = torch.tensor(0.01)
    want = 0.0
    for n, m in layers.items():  # cal_KL_modules: weight + bias per module, summed over modules
        w, b = pre[n]
        want = want + official_cal_kl(w, prior, m.weight_mu, m.weight_sigma)
        if b is not None:
            want = want + official_cal_kl(b, prior, m.bias_mu, m.bias_sigma)
    got = method.penalty(model, ctx)
    assert torch.allclose(got, want, rtol=1e-5) and got.item() > 1.0
    count = sum(m.weight_mu.numel() + (m.bias_mu.numel() if "bias" in m.names else 0) for m in layers.values())
    mean = build_method("bnn", {"kl_weight": "1.0", "kl_reduction": "mean"}, family="limited-data")
    assert torch.allclose(mean.penalty(model, ctx), want / count, rtol=1e-5)
    # time_emb_proj stays deterministic (the official skip_time default); --convert_time converts it
    assert not any(n.endswith("time_emb_proj") for n in layers)
    assert any(isinstance(m, nn.Linear) and n.endswith("time_emb_proj") for n, m in model.named_modules())
    # sigma is clamped on .data after the optimiser step, not inside the forward graph
    one = next(iter(layers.values()))
    with torch.no_grad():
        one.weight_sigma.fill_(-0.5)
        one.bias_sigma.fill_(-0.5)
    x = torch.randn(2, one.weight_mu.shape[1])
    one.train()
    with torch.no_grad():
        one(x)
        assert torch.equal(one.weight_sigma, torch.full_like(one.weight_sigma, -0.5))  # forward leaves it
    method.after_step(model, ctx)
    assert torch.equal(one.weight_sigma.data, torch.full_like(one.weight_sigma, 1e-7))
    assert torch.allclose(one(x), F.linear(x, one.weight_mu, one.bias_mu), atol=1e-4)


def test_relative_sigma_follows_each_layers_weight_scale():
    torch.manual_seed(0)
    bb = backbone()
    ctx = TrainContext(backbone=bb, dataset=None, num_timesteps=1000, batch_size=4)
    method = build_method("bnn", {"sigma_init": "0.1", "sigma_relative": "true"}, family="limited-data")
    rms = {n: float(m.weight.pow(2).mean().sqrt()) for n, m in bb.model.named_modules() if isinstance(m, nn.Linear)}
    model = method.prepare(bb.model, ctx)
    for n, m in model.named_modules():
        if isinstance(m, BayesianLinear):
            assert torch.allclose(m.weight_sigma, torch.full_like(m.weight_sigma, 0.1 * rms[n]))


def backbone():
    torch.manual_seed(0)
    return load_backbone(TASK.spec.backbone)


def test_bnn_converts_the_blocks_linears_and_trains_through_the_shared_trainer(tmp_path):
    bb = backbone()
    linears = {n: m for block, mod in bb.module_group("blocks") for n, m in
               ((f"{block}.{k}", v) for k, v in mod.named_modules())
               if isinstance(m, nn.Linear) and not n.endswith("time_emb_proj")}
    base_params = sum(p.numel() for m in linears.values() for p in m.parameters())
    ctx = TrainContext(backbone=bb, dataset=None, num_timesteps=1000, batch_size=4)
    method = build_method("bnn", {"kl_weight": "0.5"}, family="limited-data")
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([10, 700])
    with torch.no_grad():
        before = bb.model.eval()(x, t).sample
    spec = TrainSpec(batch_size=4, steps=2, lr=1e-3, checkpoint_every=10)
    data = synthetic(SyntheticDataset(generator="faces", num_train=16, num_eval=4), "train", 16)
    out = train(method, ctx, lambda: image_batch(data, bb, 4, spec), spec, noise_schedule(TASK.spec.diffusion),
                seed=0, steps=2, ckpt_dir=tmp_path)
    model = ctx.backbone.model
    converted = {n for n, m in model.named_modules() if isinstance(m, BayesianLinear)}
    assert converted == set(linears) and converted
    converted_params = sum(p.numel() for n, m in model.named_modules() if isinstance(m, BayesianLinear)
                           for p in m.parameters())
    assert converted_params == 2 * base_params
    assert out.trainable_params == sum(p.numel() for p in model.parameters())  # full fine-tuning otherwise
    assert all(torch.isfinite(torch.tensor(v)) for _, v in out.loss_curve)
    model.eval()
    with torch.no_grad():  # evaluation draws nothing: two calls agree, and the model moved from the start
        a, b = model(x, t).sample, model(x, t).sample
    assert torch.equal(a, b) and not torch.equal(a, before)
    d = out.diagnostics["bnn"]  # keyed by the method part, as in a composition
    assert d["sigma_final"]["elements"] == base_params and abs(d["sigma_initial"]["mean"] - 0.01) < 1e-6
    assert d["sigma_changed"] and d["loss_change"] != 0 and d["kl_sum"] > 0
