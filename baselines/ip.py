"""Input Perturbation (DDPM-IP, Ning et al. 2023; forever208/DDPM-IP gaussian_diffusion.py): the
noisy input is built from noise + gamma * xi, xi a fresh standard normal, while the regression
target stays the original noise; gamma 0.1 (0.15 on CIFAR-10). It simulates at training time the
prediction error the sampler feeds back, and costs nothing at sampling."""

from __future__ import annotations

import torch
from pydantic import Field

from bench.method import Method, MethodConfig


class IPConfig(MethodConfig):
    gamma: float = Field(0.1, gt=0, description="scale of the extra input noise")


class InputPerturbation(Method):
    name = "ip"
    Config = IPConfig
    summary = "x_t from noise + gamma * xi, target the original noise (DDPM-IP)"
    reference = "Ning et al. 2023, Input Perturbation Reduces Exposure Bias in Diffusion Models"
    families = frozenset({"pretrain-corruption", "class-transfer", "limited-data"})

    def input_noise(self, noise, batch, ctx):
        return noise + self.config.gamma * torch.randn_like(noise)
