"""Sampling with classifier-free guidance through the backbone's common denoiser call. The harness owns sampling; methods
never touch it, which keeps every method's numbers comparable.

`denoiser_at` lets an analysis swap the network used at each reverse step (the chain-of-forgetting
analysis replaces the fine-tuned model by the pre-trained one on the steps nearest the data).
"""

from __future__ import annotations

from typing import Callable

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from tqdm.auto import tqdm

from bench.backbone import Backbone
from bench.spec import DiffusionSpec

SCHEDULERS = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpm-solver": DPMSolverMultistepScheduler}


def make_scheduler(name: str, diffusion: DiffusionSpec, steps: int):
    kwargs = dict(num_train_timesteps=diffusion.num_train_timesteps, beta_schedule=diffusion.beta_schedule,
                  beta_start=diffusion.beta_start, beta_end=diffusion.beta_end, prediction_type="epsilon")
    if name != "dpm-solver":
        kwargs["clip_sample"] = False
    scheduler = SCHEDULERS[name](**kwargs)
    scheduler.set_timesteps(steps)
    return scheduler


@torch.no_grad()
def guided_eps(backbone: Backbone, model, x, t, cond: dict[str, torch.Tensor], guidance_scale: float) -> torch.Tensor:
    if guidance_scale == 1.0:
        return backbone.predict(x, t.expand(len(x)), cond, model=model)
    both = torch.cat([x, x])
    null = backbone.null_cond(cond)
    joint = {k: torch.cat([cond[k], null[k]]) for k in cond}
    c, u = backbone.predict(both, t.expand(len(both)), joint, model=model).chunk(2)
    return u + guidance_scale * (c - u)


@torch.no_grad()
def sample(
    backbone: Backbone,
    cond: torch.Tensor | dict[str, torch.Tensor],
    *,
    diffusion: DiffusionSpec,
    scheduler: str,
    steps: int,
    guidance_scale: float,
    batch_size: int,
    seed: int,
    denoiser_at: Callable[[int, int], torch.nn.Module] | None = None,
    desc: str = "sampling",
) -> torch.Tensor:
    """Generate one image per condition row (a tensor is class labels, `{"y": labels}`); returns
    uint8 NHWC. Deterministic in `seed`; each image's initial noise comes from its own index."""
    if isinstance(cond, torch.Tensor):
        cond = {"y": cond}
    n = len(next(iter(cond.values())))
    model = backbone.model
    was_training = model.training
    model.eval()
    size = backbone.sample_size
    out = []
    with tqdm(total=n, desc=desc, unit="img", leave=False) as bar:
        for start in range(0, n, batch_size):
            y = {k: v[start : start + batch_size].to(backbone.device) for k, v in cond.items()}
            count = len(next(iter(y.values())))
            # Each image's noise has its own stream keyed by (seed, index): batching does not matter.
            noise = torch.stack([
                torch.randn(backbone.channels, size, size, generator=torch.Generator().manual_seed(seed * 1_000_003 + k))
                for k in range(start, start + count)
            ])
            sched = make_scheduler(scheduler, diffusion, steps)
            x = noise.to(backbone.device) * sched.init_noise_sigma
            step_gen = torch.Generator().manual_seed(seed * 1_000_003 + start + 7)
            for i, t in enumerate(sched.timesteps):
                net = denoiser_at(i, len(sched.timesteps)) if denoiser_at else model
                eps = guided_eps(backbone, net, sched.scale_model_input(x, t), t, y, guidance_scale)
                x = sched.step(eps, t, x, generator=step_gen).prev_sample
            out.append(backbone.decode(x))
            bar.update(count)
    model.train(was_training)
    return torch.cat(out)


def balanced_labels(n: int, num_classes: int) -> torch.Tensor:
    """Class labels cycling over the label space, so every class gets n/K samples."""
    return torch.arange(n) % num_classes
