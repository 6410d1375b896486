"""Bayesian fine-tuning layers (baselines/bnn.py): sigma 0 is the converted layer exactly, twice the
parameters, the KL's zero, evaluation without sampling, and training through the shared trainer on
the limited-data tiny UNet."""

from __future__ import annotations

import torch
from torch import nn

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
    assert torch.allclose(bay(x), lin(x), atol=1e-5)  # sigma is kept >= 1e-7 in training
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


def backbone():
    torch.manual_seed(0)
    return load_backbone(TASK.spec.backbone)


def test_bnn_converts_the_blocks_linears_and_trains_through_the_shared_trainer(tmp_path):
    bb = backbone()
    linears = {n: m for block, mod in bb.module_group("blocks") for n, m in
               ((f"{block}.{k}", v) for k, v in mod.named_modules()) if isinstance(m, nn.Linear)}
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
