"""The variational-bound term of the hybrid loss (Nichol & Dhariwal 2021, "Improved DDPM", Sec. 3.1),
which trains a learned-sigma model's variance channels as in improved-diffusion and DiT.

The variance is "learned range": v in [-1, 1] interpolates, in log space, between the posterior
variance beta~_t (v = -1) and beta_t (v = 1). The term is L_t = KL(q(x_{t-1}|x_t, x_0) || p(x_{t-1}|x_t))
in bits per dimension for t > 0 and the discretised-Gaussian decoder NLL for t = 0, with the mean of
p computed from a *detached* noise prediction: the epsilon MSE alone trains the mean and L_t only
the variance (iDDPM's "stop-gradient on mu"). The trainer adds `vlb_weight * L_t` per sample; with
weight 1 this is DiT's `loss = mse + vb` and improved-diffusion's rescaled hybrid loss at T = 1000
(lambda = 1e-3 times the T terms of L_vlb, one sampled per step).
"""

from __future__ import annotations

import math

import torch


def _posterior(schedule, t: torch.Tensor, shape) -> tuple[torch.Tensor, ...]:
    """Per-sample coefficients of q(x_{t-1} | x_t, x_0), broadcast to `shape`."""
    # On the CPU: diffusers' add_noise moves the scheduler's alphas_cumprod (not its betas) to the
    # samples' device, so on a GPU the two tables would otherwise sit on different devices.
    betas = schedule.betas.double().cpu()
    abar = schedule.alphas_cumprod.double().cpu()
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
    var = betas * (1 - abar_prev) / (1 - abar)
    # Clipped as in improved-diffusion: the posterior variance at t = 0 is 0, so borrow t = 1's.
    log_var = torch.log(torch.cat([var[1:2], var[1:]]))
    coef_x0 = betas * abar_prev.sqrt() / (1 - abar)
    coef_xt = (1 - abar_prev) * (1 - betas).sqrt() / (1 - abar)
    view = lambda a: a[t.cpu()].float().to(t.device).view(-1, *([1] * (len(shape) - 1)))  # noqa: E731
    return (view(coef_x0), view(coef_xt), view(log_var), view(torch.log(betas)), view(abar))


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2).pow(2) * torch.exp(-logvar2))


def _approx_std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    # improved-diffusion's tanh approximation, kept so the t = 0 term matches the official code.
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log-likelihood of data in [-1, 1] quantised to 256 bins under N(mean, exp(log_scale)^2)."""
    centered, inv_std = x - mean, torch.exp(-log_scale)
    cdf_plus = _approx_std_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = _approx_std_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


def vlb_term(schedule, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor,
             v: torch.Tensor) -> torch.Tensor:
    """Per-sample L_t in bits per dimension; gradients reach `v` only (`eps` is detached here)."""
    coef_x0, coef_xt, min_log, max_log, abar = _posterior(schedule, t, x0.shape)
    true_mean = coef_x0 * x0 + coef_xt * x_t
    x0_pred = (x_t - (1 - abar).sqrt() * eps.detach()) / abar.sqrt()
    model_mean = coef_x0 * x0_pred + coef_xt * x_t
    frac = (v + 1) / 2
    model_log_var = frac * max_log + (1 - frac) * min_log
    kl = normal_kl(true_mean, min_log, model_mean, model_log_var).flatten(1).mean(1) / math.log(2.0)
    nll = -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_log_var).flatten(1).mean(1) / math.log(2.0)
    return torch.where(t == 0, nll, kl)
