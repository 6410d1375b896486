"""Sampling with classifier-free guidance through the backbone's common denoiser call. The harness owns sampling; methods
never touch it, which keeps every method's numbers comparable.

`denoiser_at` lets an analysis swap the network used at each reverse step (the chain-of-forgetting
analysis replaces the fine-tuned model by the pre-trained one on the steps nearest the data).
"""

from __future__ import annotations

from typing import Callable

import torch

from bench.backbone import Backbone
from bench.errors import BenchError
from bench.progress import progress
from bench.spec import DiffusionSpec

STEP_NOISE_OFFSET = 2**48  # step-noise streams never coincide with the initial-noise streams
# name -> diffusers class, imported when a sampler is built (diffusers takes seconds to import).
SCHEDULERS = {"ddpm": "DDPMScheduler", "ddim": "DDIMScheduler", "dpm-solver": "DPMSolverMultistepScheduler"}


def make_scheduler(name: str, diffusion: DiffusionSpec, steps: int, learned_variance: bool = False,
                   clip_denoised: bool = False):
    """`clip_denoised`: improved-diffusion's default (p_mean_variance with clip_denoised=True): the x0
    predicted from the noise is clamped to [-1, 1] and the posterior mean computed from the clamped
    x0 (diffusers' `clip_sample`, range 1; the DDIM step then re-derives the noise from it, see
    `sample`). Off, the predicted x0 is used as is (DiT and LDM sample latents unclipped)."""
    import diffusers

    kwargs = dict(num_train_timesteps=diffusion.num_train_timesteps, beta_schedule=diffusion.beta_schedule,
                  beta_start=diffusion.beta_start, beta_end=diffusion.beta_end, prediction_type="epsilon")
    if name != "dpm-solver":
        kwargs["clip_sample"] = bool(clip_denoised)
        if clip_denoised:
            kwargs["clip_sample_range"] = 1.0
    elif clip_denoised:
        raise BenchError("sampling.clip_denoised applies to the ddpm and ddim samplers, not dpm-solver")
    if name == "ddpm" and learned_variance:
        # A learned-sigma model samples with its own variance (iDDPM, DiT): the scheduler reads the
        # variance channels that follow the noise prediction. DDIM and DPM-Solver ignore them.
        kwargs["variance_type"] = "learned_range"
    scheduler = getattr(diffusers, SCHEDULERS[name])(**kwargs)
    if diffusion.timestep_spacing == "dit":
        if name != "ddpm":
            raise BenchError(f"diffusion.timestep_spacing 'dit' is DiT's respaced DDPM; scheduler {name!r} "
                             f"steps by a fixed stride and cannot follow it")
        # Custom timesteps: diffusers' DDPM then steps from each to the next in the list.
        scheduler.set_timesteps(timesteps=dit_timesteps(diffusion.num_train_timesteps, steps))
    else:
        scheduler.set_timesteps(steps)
    return scheduler


def dit_timesteps(num_train_timesteps: int, steps: int) -> list[int]:
    """The original DiT's sampling timesteps, descending: `space_timesteps(T, str(steps))` of
    facebookresearch/DiT diffusion/respace.py, one section: `steps` points evenly spaced over
    0..T-1 (stride (T-1)/(steps-1)), each rounded, so 250 of 1000 run 999, 995, ..., 4, 0.
    diffusers' default "leading" spacing runs 996, 992, ..., 0 instead."""
    if not 1 <= steps <= num_train_timesteps:
        raise BenchError(f"cannot respace {num_train_timesteps} diffusion steps into {steps}")
    stride = (num_train_timesteps - 1) / (steps - 1) if steps > 1 else 1
    # A running sum, as the original: i * stride rounds differently where it lands on .5 exactly
    # (21 steps: 10 x 49.95 = 499.5 -> 500, the summed 499.49999... -> 499).
    taken, position = set(), 0.0
    for _ in range(steps):
        taken.add(round(position))
        position += stride
    return sorted(taken, reverse=True)


@torch.no_grad()
def guided_output(backbone: Backbone, model, x, t, cond: dict[str, torch.Tensor], guidance_scale: float,
                  keep_variance: bool = False) -> torch.Tensor:
    """The guided noise prediction; with `keep_variance`, followed by the conditional branch's
    variance channels (guidance applies to the noise prediction only, as in DiT's sampler). A
    backbone with `guidance_channels` guides only those first channels of it (the original DiT)."""
    both = x if guidance_scale == 1.0 else torch.cat([x, x])
    if guidance_scale != 1.0:
        null = backbone.null_cond(cond)
        cond = {k: torch.cat([cond[k], null[k]]) for k in cond}
    # The scheduler's timesteps live on the CPU; the denoiser's embedders on the model's device.
    eps, v = backbone.predict_with_variance(both, t.to(x.device).expand(len(both)), cond, model=model)
    if guidance_scale != 1.0:
        c, u = eps.chunk(2)
        guided, k = u + guidance_scale * (c - u), backbone.guidance_channels
        if k is not None and k < guided.shape[1]:
            # The original DiT's forward_with_cfg guides the first 3 of DiT-XL/2's 4 noise channels
            # ("for exact reproducibility reasons"); the rest stay the conditional prediction.
            guided = torch.cat([guided[:, :k], c[:, k:]], 1)
        eps, v = guided, (v.chunk(2)[0] if v is not None else None)
    return torch.cat([eps, v], 1) if keep_variance and v is not None else eps


@torch.no_grad()
def sample(
    backbone: Backbone,
    cond: torch.Tensor | dict[str, torch.Tensor] | int,
    *,
    diffusion: DiffusionSpec,
    scheduler: str,
    steps: int,
    guidance_scale: float,
    batch_size: int,
    seed: int,
    denoiser_at: Callable[[int, int], torch.nn.Module] | None = None,
    desc: str = "sampling",
    decode: bool = True,
    clip_denoised: bool | None = False,
) -> torch.Tensor:
    """Generate one image per condition row (a tensor is class labels, `{"y": labels}`; an int n
    asks an unconditional backbone for n images); returns uint8 NHWC. Deterministic in `seed`; each
    image's initial and step noise come from streams keyed by its own index, so an image does not
    depend on `batch_size` or on which other images are generated with it. The DDPM sampler uses a learned-sigma model's
    own variance. `decode=False` returns the final denoiser-space tensors (latents) instead.
    `clip_denoised` (`sampling.clip_denoised`): clamp each step's predicted x0 to [-1, 1] as
    improved-diffusion samples pixel-space models (make_scheduler)."""
    if isinstance(cond, torch.Tensor):
        cond = {"y": cond}
    n = cond if isinstance(cond, int) else len(next(iter(cond.values())))
    cond = {} if isinstance(cond, int) else cond
    learned = backbone.learned_sigma and scheduler == "ddpm"
    model = backbone.model
    was_training = model.training
    model.eval()
    size = backbone.sample_size
    out = []
    with progress(total=n, desc=desc, unit="img", leave=False) as bar:
        for start in range(0, n, batch_size):
            y = {k: v[start : start + batch_size].to(backbone.device) for k, v in cond.items()}
            count = min(batch_size, n - start)
            # Each image's noise has its own stream keyed by (seed, index): batching does not matter.
            noise = torch.stack([
                torch.randn(backbone.channels, size, size, generator=torch.Generator().manual_seed(seed * 1_000_003 + k))
                for k in range(start, start + count)
            ])
            sched = make_scheduler(scheduler, diffusion, steps, learned_variance=learned,
                                   clip_denoised=bool(clip_denoised))
            # improved-diffusion's DDIM step re-derives the noise from the clamped x0 (its
            # _predict_eps_from_xstart); diffusers does so with `use_clipped_model_output`.
            extra = {"use_clipped_model_output": True} if clip_denoised and scheduler == "ddim" else {}
            x = noise.to(backbone.device) * sched.init_noise_sigma
            # Stochastic samplers (DDPM, SDE solvers) draw step noise per image from its own stream
            # too (diffusers accepts one generator per batch row), so no image depends on batching.
            step_gen = [torch.Generator().manual_seed(STEP_NOISE_OFFSET + seed * 1_000_003 + k)
                        for k in range(start, start + count)]
            for i, t in enumerate(sched.timesteps):
                net = denoiser_at(i, len(sched.timesteps)) if denoiser_at else model
                pred = guided_output(backbone, net, sched.scale_model_input(x, t), t, y, guidance_scale, learned)
                x = sched.step(pred, t, x, generator=step_gen, **extra).prev_sample
            out.append(backbone.decode(x) if decode else x.cpu())
            bar.update(count)
    model.train(was_training)
    return torch.cat(out)


def balanced_labels(n: int, num_classes: int) -> torch.Tensor:
    """Class labels cycling over the label space, so every class gets n/K samples."""
    return torch.arange(n) % num_classes
