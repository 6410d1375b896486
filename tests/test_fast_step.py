"""The fast step (bench/trainer.py): the EMA as one multi-tensor `_foreach_lerp_` and AdamW's fused
kernel on CUDA. What each checks:

- the foreach EMA gives the per-parameter loop's bits on the CPU (foreach runs lerp_ per tensor
  there), so the committed tiny-profile results, computed with the loop, stay valid;
- a short real training run with an EMA (corruption-sweep's tiny profile, which keeps one) ends
  with the same weights and the same average, bit for bit, whether the EMA runs foreach or the loop;
- the optimizer: fused only where every parameter is on CUDA; on the CPU torch's default (the
  per-parameter loop, what the committed results used);
- fused AdamW (supported on the CPU by torch >= 2.4) against the default over 20 steps: within
  FUSED_RTOL of how far the parameters moved (the two differ in the order of float operations,
  so not bit for bit; the CUDA fused kernel is the one the paper profiles use, checked on a GPU only).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from bench.trainer import EMA, make_optimizer
from conftest import small_task_file

# Largest |fused - default| after 20 AdamW steps, as a fraction of the largest parameter move.
FUSED_RTOL = 1e-5  # measured on this CPU (torch 2.14.1): 0 without weight decay, 1.9e-6 with 0.01


def _params(seed: int = 0) -> list[tuple[str, torch.nn.Parameter]]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(64, 32), (32,), (3, 5, 7), (1,), (1000,), (17, 19)]
    return [(f"p{i}", torch.nn.Parameter(torch.randn(s, generator=g))) for i, s in enumerate(shapes)]


def test_foreach_ema_gives_the_loops_bits():
    a, b = _params(), _params()
    fast, loop = EMA(a, 0.9999), EMA(b, 0.9999)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        with torch.no_grad():
            for (_, pa), (_, pb) in zip(a, b):
                step = torch.randn(pa.shape, generator=g)
                pa.add_(step), pb.add_(step)
        fast.update()
        loop.update_reference()
    assert all(torch.equal(fast.shadow[n], loop.shadow[n]) for n in fast.shadow)
    assert any(not torch.equal(fast.shadow[n], p) for n, p in a)  # the average lags the weights


def test_a_training_run_ends_with_the_same_bits_either_way(tmp_path, monkeypatch):
    from bench.backbone import load_backbone, noise_schedule
    from bench.families import family_class
    from bench.method import TrainContext
    from bench.registry import build_method
    from bench.tasks import load_task
    from bench.trainer import train

    task = load_task(str(small_task_file(tmp_path, "corruption-sweep", tracking=None)), "tiny")
    assert task.spec.train.ema_decay is not None  # the tiny profile keeps an EMA

    def run(reference: bool):
        if reference:
            monkeypatch.setattr(EMA, "update", EMA.update_reference)
        family = family_class(task.file.family)(task, "source64")
        family.load_data()
        torch.manual_seed(0)
        backbone = load_backbone(task.spec.backbone)
        family.bind(backbone)
        family.start(0)
        ctx = TrainContext(backbone, family.dataset, task.spec.diffusion.num_train_timesteps,
                           task.spec.train.batch_size, extra_data=family.extra)
        spec = task.spec.train.model_copy(update={"steps": 4, "checkpoint_every": 100})
        train(build_method("cep-u"), ctx, lambda: family.draw_batch(spec), spec, noise_schedule(task.spec.diffusion),
              seed=0, steps=4, ckpt_dir=tmp_path / f"ckpt-{reference}")
        monkeypatch.undo()
        return {k: v.detach().clone() for k, v in backbone.model.state_dict().items()}  # the EMA, swapped in

    fast, loop = run(False), run(True)
    assert fast.keys() == loop.keys() and all(torch.equal(fast[k], loop[k]) for k in fast)


def test_fused_adamw_only_where_every_parameter_is_on_cuda(monkeypatch):
    made = []
    monkeypatch.setattr(torch.optim, "AdamW", lambda params, **kw: made.append(kw))
    on = lambda kind: SimpleNamespace(device=torch.device(kind))  # noqa: E731
    make_optimizer([on("cuda"), on("cuda")], 1e-4, 0.0)
    make_optimizer([on("cuda"), on("cpu")], 1e-4, 0.0)
    make_optimizer([on("cpu")], 1e-4, 0.0)
    assert made == [{"lr": 1e-4, "weight_decay": 0.0, "fused": True}, {"lr": 1e-4, "weight_decay": 0.0},
                    {"lr": 1e-4, "weight_decay": 0.0}]


def test_the_cpu_default_is_the_loop_the_results_were_computed_with():
    params = [p for _, p in _params()]
    opt = make_optimizer(params, 1e-3, 0.01)
    assert not opt.defaults.get("fused") and not opt.defaults.get("foreach")
    ref = torch.optim.AdamW([p.detach().clone().requires_grad_() for p in params], lr=1e-3, weight_decay=0.01)
    g = torch.Generator().manual_seed(2)
    for _ in range(3):
        for p, q in zip(params, ref.param_groups[0]["params"]):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        opt.step(), ref.step()
    assert all(torch.equal(p, q) for p, q in zip(params, ref.param_groups[0]["params"]))


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_fused_adamw_matches_the_default_within_the_stated_tolerance(weight_decay):
    start = [p.detach().clone() for _, p in _params()]
    fused = [p.clone().requires_grad_() for p in start]
    plain = [p.clone().requires_grad_() for p in start]
    opt_f = make_optimizer(fused, 1e-3, weight_decay, fused=True)
    opt_p = make_optimizer(plain, 1e-3, weight_decay, fused=False)
    assert opt_f.defaults["fused"]
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        for f, p in zip(fused, plain):
            f.grad = torch.randn(f.shape, generator=g) * 1e-2
            p.grad = f.grad.clone()
        opt_f.step(), opt_p.step()
    moved = max((p - s).abs().max().item() for p, s in zip(plain, start))
    apart = max((f - p).abs().max().item() for f, p in zip(fused, plain))
    assert moved > 0 and apart <= FUSED_RTOL * moved, (apart, moved)
