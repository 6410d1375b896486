"""EWC as a forgetting diagnostic (Kirkpatrick et al. 2017), as in Diff-Tuning's analysis.

    F_i   = mean over N samples of (d loss_n / d theta_i)^2 at the pre-trained theta*   (diagonal,
            empirical Fisher of the per-sample denoising loss on source / knowledge-bank data)
    EWC   = sum_i F_i (theta_i - theta*_i)^2   over the tunable parameters
    mean  = EWC / number of tunable scalar parameters

Per-sample gradients (one backward per sample) rather than squared batch gradients: the square
of a batch mean is not the mean of squares, and the estimator should not depend on batch size.
Timesteps, noise and sample order come from one seeded generator, so the Fisher is deterministic
given (model, data, seed).
"""

from __future__ import annotations

from typing import Iterable

import torch

from bench.metrics._checks import MetricInputError


def _per_sample_loss(model, schedule, x0, y, t, noise) -> torch.Tensor:
    from bench.backbone import eps_prediction

    x_t = schedule.add_noise(x0, noise, t)
    eps = eps_prediction(model, x_t, t, y)
    return (eps - noise).pow(2).mean()


def diagonal_fisher(model: torch.nn.Module, schedule, x0: torch.Tensor, labels: torch.Tensor | None = None,
                    null_class: int | None = None, num_samples: int | None = None, seed: int = 0,
                    names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """Diagonal Fisher of `model` (the pre-trained denoiser) on data `x0` (N, C, H, W in the
    denoiser's space: latents, or pixels in [-1, 1]). `labels` None means the null class (how
    Diff-Tuning trains on its knowledge bank). Returns {name: float32 tensor} for `names`
    (default: every parameter)."""
    if x0.ndim != 4 or len(x0) == 0:
        raise MetricInputError(f"Fisher data must be a non-empty (N, C, H, W) tensor, got {tuple(x0.shape)}")
    if not torch.isfinite(x0).all():
        raise MetricInputError("Fisher data contains NaN or infinite values")
    if labels is None:
        if null_class is None:
            raise MetricInputError("diagonal_fisher needs labels or the null class index")
        labels = torch.full((len(x0),), null_class, dtype=torch.long)
    if len(labels) != len(x0):
        raise MetricInputError(f"{len(labels)} labels for {len(x0)} samples")
    params = dict(model.named_parameters())
    wanted = list(params) if names is None else list(names)
    missing = [n for n in wanted if n not in params]
    if missing:
        raise MetricInputError(f"parameters not in the model: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    gen = torch.Generator().manual_seed(seed)
    n = len(x0) if num_samples is None else num_samples
    order = torch.randperm(len(x0), generator=gen)
    order = order.repeat((n + len(order) - 1) // len(order))[:n]
    device = next(model.parameters()).device
    requires = {k: p.requires_grad for k, p in params.items()}
    was_training = model.training
    model.eval()
    for k, p in params.items():
        p.requires_grad_(k in wanted)
    fisher = {k: torch.zeros_like(params[k], dtype=torch.float32) for k in wanted}
    try:
        for idx in order.tolist():
            t = torch.randint(0, schedule.config.num_train_timesteps, (1,), generator=gen)
            noise = torch.randn(x0[idx:idx + 1].shape, generator=gen)
            loss = _per_sample_loss(model, schedule, x0[idx:idx + 1].to(device), labels[idx:idx + 1].to(device),
                                    t.to(device), noise.to(device, x0.dtype))
            grads = torch.autograd.grad(loss, [params[k] for k in wanted], allow_unused=True)
            for k, g in zip(wanted, grads):
                if g is not None:
                    fisher[k] += g.detach().float().pow(2)
    finally:
        for k, p in params.items():
            p.requires_grad_(requires[k])
        model.train(was_training)
    return {k: v / n for k, v in fisher.items()}


def ewc(fisher: dict[str, torch.Tensor], theta_finetuned: dict[str, torch.Tensor],
        theta_pretrained: dict[str, torch.Tensor], names: Iterable[str]) -> dict:
    """sum F (theta - theta*)^2 over `names` (the tunable parameters). Names that are absent
    from the pre-trained model or the Fisher (injected modules such as LoRA factors, which have no
    pre-trained value) are skipped and counted in `skipped`."""
    total, count, skipped = 0.0, 0, []
    for name in names:
        if name not in fisher or name not in theta_pretrained or name not in theta_finetuned:
            skipped.append(name)
            continue
        f, a, b = fisher[name], theta_finetuned[name], theta_pretrained[name]
        if not (f.shape == a.shape == b.shape):
            raise MetricInputError(f"{name}: shapes differ (Fisher {tuple(f.shape)}, fine-tuned "
                                   f"{tuple(a.shape)}, pre-trained {tuple(b.shape)})")
        delta = a.detach().double().cpu() - b.detach().double().cpu()
        total += float((f.detach().double().cpu() * delta.pow(2)).sum())
        count += f.numel()
    if count == 0:
        raise MetricInputError("EWC: none of the tunable parameters exists in the pre-trained model and the Fisher")
    return {"total": total, "mean": total / count, "n_params": count, "skipped": skipped}


def ewc_against_pretrained(pretrained: torch.nn.Module, finetuned: torch.nn.Module, names: Iterable[str], schedule,
                           x0: torch.Tensor, labels: torch.Tensor | None = None, null_class: int | None = None,
                           num_samples: int | None = 256, seed: int = 0) -> dict | None:
    """One call for a finished run: Fisher of `pretrained` on `x0` over the tunable `names` that
    exist in it, then EWC of `finetuned`. None when no tunable parameter has a pre-trained value
    (adapter-only methods such as LoRA)."""
    names = list(names)
    pre = dict(pretrained.named_parameters())
    present = [n for n in names if n in pre]
    if not present:
        return None
    n = min(num_samples, len(x0)) if num_samples else len(x0)
    fisher = diagonal_fisher(pretrained, schedule, x0, labels, null_class, n, seed, names=present)
    out = ewc(fisher, dict(finetuned.named_parameters()), pre, names)
    return out | {"fisher_samples": n, "fisher_seed": seed}
