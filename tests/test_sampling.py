"""Sampling and the knowledge bank."""

import pytest
import torch

from bench.backbone import load_backbone
from bench.knowledge_bank import bank_path, knowledge_bank
from bench.sampling import sample
from bench.tasks import load_task


def _setup():
    task = load_task("dit-transfer", "tiny")
    return task, load_backbone(task.spec.backbone)


@pytest.mark.parametrize("scheduler", ["ddim", "ddpm"])  # DDPM draws fresh noise at every step
def test_samples_do_not_depend_on_batch_size_and_follow_the_seed(scheduler):
    task, backbone = _setup()
    labels = torch.arange(6) % 4
    kw = dict(diffusion=task.spec.diffusion, scheduler=scheduler, steps=3, guidance_scale=1.5, seed=3)
    a = sample(backbone, labels, batch_size=6, **kw)
    b = sample(backbone, labels, batch_size=4, **kw)
    assert a.dtype == torch.uint8 and a.shape == (6, 16, 16, 3)
    assert torch.equal(a, b)
    assert not torch.equal(a, sample(backbone, labels, batch_size=6, **{**kw, "seed": 4}))
    assert torch.equal(a[:4], sample(backbone, labels[:4], batch_size=4, **kw))  # nor on the images after it


def test_denoiser_swap_is_used_on_the_requested_steps():
    task, backbone = _setup()
    calls = []

    def pick(i, n):
        calls.append((i, n))
        return backbone.model

    sample(backbone, torch.zeros(2, dtype=torch.long), diffusion=task.spec.diffusion, scheduler="ddim", steps=5,
           guidance_scale=1.0, batch_size=2, seed=0, denoiser_at=pick)
    assert calls == [(i, 5) for i in range(5)]


def test_knowledge_bank_is_generated_once_and_cached_by_hash(isolated_dirs):
    task, backbone = _setup()
    spec = task.spec.knowledge_bank.model_copy(update={"num_images": 6, "steps": 3, "batch_size": 6})
    images, key = knowledge_bank(backbone, spec, task.spec.diffusion)
    path = bank_path(backbone, spec, task.spec.diffusion)
    assert path.exists() and path.stem == key and images.shape == (6, 16, 16, 3)
    mtime = path.stat().st_mtime_ns
    again, key2 = knowledge_bank(backbone, spec, task.spec.diffusion)
    assert key2 == key and torch.equal(again, images) and path.stat().st_mtime_ns == mtime
    other = spec.model_copy(update={"seed": 1})
    assert bank_path(backbone, other, task.spec.diffusion) != path


# -- clip_denoised against improved-diffusion's formula --------------------------------------------

class _Toy(torch.nn.Module):
    """A learned-sigma pixel 'denoiser' whose noise prediction puts x0 far outside [-1, 1]."""

    def __init__(self):
        super().__init__()
        from types import SimpleNamespace

        self.config = SimpleNamespace(in_channels=3, out_channels=6, sample_size=4)
        self.w = torch.nn.Parameter(torch.tensor(0.0))

    def forward(self, x, t):
        s = (t.float() / 1000).view(-1, 1, 1, 1)
        return torch.cat([0.4 * x - 0.8 * s + 0.1, torch.tanh(x + s)], 1)


def _toy_backbone():
    from bench.backbone.base import Backbone

    class ToyBackbone(Backbone):
        def output(self, x, t, cond, model=None):
            return (model or self.model)(x, t)

        def null_cond(self, cond):
            return {}

    return ToyBackbone(_Toy(), None, 1.0, "toy")


def _official(scheduler, ts, alphas_cumprod, n, seed, clip):
    """improved-diffusion's reverse process, written from gaussian_diffusion.py (p_mean_variance with
    clip_denoised, p_sample, ddim_sample at eta 0) on the respaced chain `ts`, with the sampler's
    own initial and step noise streams."""
    from bench.sampling import STEP_NOISE_OFFSET

    model = _Toy()
    x = torch.stack([torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(seed * 1_000_003 + k))
                     for k in range(n)]).double()
    gens = [torch.Generator().manual_seed(STEP_NOISE_OFFSET + seed * 1_000_003 + k) for k in range(n)]
    ac = alphas_cumprod.double()
    for i, t in enumerate(ts):
        a_t = ac[t]
        a_prev = ac[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, dtype=torch.float64)
        beta = 1 - a_t / a_prev                                     # the respaced beta
        out = model(x.float(), torch.full((n,), int(t))).double()
        eps, v = out[:, :3], out[:, 3:]
        x0 = (1 / a_t).sqrt() * x - (1 / a_t - 1).sqrt() * eps      # _predict_xstart_from_eps
        if clip:
            x0 = x0.clamp(-1, 1)                                    # process_xstart
        if scheduler == "ddim":
            eps = ((1 / a_t).sqrt() * x - x0) / (1 / a_t - 1).sqrt()  # _predict_eps_from_xstart
            x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
            continue
        coef1 = beta * a_prev.sqrt() / (1 - a_t)                    # q_posterior_mean_variance
        coef2 = (1 - a_prev) * (1 - beta).sqrt() / (1 - a_t)
        mean = coef1 * x0 + coef2 * x
        if i + 1 == len(ts):                                        # t == 0: no noise
            x = mean
            continue
        min_log = (beta * (1 - a_prev) / (1 - a_t)).log()           # posterior log variance (t > 0)
        max_log = beta.log()
        frac = (v + 1) / 2
        log_var = frac * max_log + (1 - frac) * min_log
        noise = torch.cat([torch.randn(1, 3, 4, 4, generator=g) for g in gens]).double()
        x = mean + (0.5 * log_var).exp() * noise
    return x.float()


@pytest.mark.parametrize("scheduler", ["ddpm", "ddim"])
def test_clip_denoised_follows_improved_diffusion(scheduler):
    """With `clip_denoised` every step clamps the predicted x0 to [-1, 1] before the posterior mean
    (DDPM, learned variance) or before re-deriving the noise (DDIM), as improved-diffusion samples by
    default; without it (the default, every tiny profile) x0 is used unclipped, as before."""
    from bench.sampling import make_scheduler
    from bench.spec import DiffusionSpec

    diffusion = DiffusionSpec()
    backbone = _toy_backbone()
    sched = make_scheduler(scheduler, diffusion, 6)
    ts = [int(t) for t in sched.timesteps]
    kw = dict(diffusion=diffusion, scheduler=scheduler, steps=6, guidance_scale=1.0, batch_size=3, seed=5, decode=False)
    results = {}
    for clip in (False, True):
        got = sample(backbone, 3, clip_denoised=clip, **kw)
        want = _official(scheduler, ts, sched.alphas_cumprod, 3, 5, clip)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
        results[clip] = got
    assert (results[True] - results[False]).abs().max() > 0.1  # the toy's x0 does leave [-1, 1]


def test_clip_denoised_is_refused_for_dpm_solver():
    from bench.errors import BenchError
    from bench.sampling import make_scheduler
    from bench.spec import DiffusionSpec

    with pytest.raises(BenchError, match="ddpm and ddim"):
        make_scheduler("dpm-solver", DiffusionSpec(), 5, clip_denoised=True)
