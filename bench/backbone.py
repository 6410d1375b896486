"""Backbones: adapters over diffusers models that the trainer and sampler share.

A backbone is a denoiser (DiTTransformer2DModel for class-conditional transfer), an optional
latent autoencoder, and the noise schedule. Paper weights come from the hub through diffusers'
`from_pretrained`; the tiny profile builds the same class from a config and loads the project's
own safetensors (checked against the sha256 in the task file).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, DiTTransformer2DModel
from safetensors.torch import load_file

from bench.errors import BenchError, unknown
from bench.paths import ASSETS_DIR
from bench.spec import BackboneSpec, DiffusionSpec, HubRef


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """Content hash of a state dict, independent of file format."""
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass
class Backbone:
    model: DiTTransformer2DModel
    vae: AutoencoderKL | None
    vae_scaling_factor: float
    num_source_classes: int
    weights_sha256: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> "Backbone":
        self.model.to(device)
        if self.vae is not None:
            self.vae.to(device)
        return self

    @property
    def null_class(self) -> int:
        """Label of the unconditional branch (classifier-free guidance and knowledge bank)."""
        return self.num_source_classes

    @property
    def channels(self) -> int:
        return self.model.config.in_channels

    @property
    def learned_sigma(self) -> bool:
        return self.model.config.out_channels == 2 * self.model.config.in_channels

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (NCHW) to the denoiser's space."""
        images = images.to(self.device, non_blocking=True)
        if self.vae is None:
            return images
        with torch.no_grad():
            return self.vae.encode(images).latent_dist.sample() * self.vae_scaling_factor

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Denoiser space to uint8 NHWC images."""
        if self.vae is not None:
            with torch.no_grad():
                x = self.vae.decode(x / self.vae_scaling_factor).sample
        return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()


def eps_prediction(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The noise prediction; DiT's learned-sigma channels are dropped (the trainer uses the
    epsilon loss; the variance head stays as pre-trained)."""
    out = model(x, timestep=t, class_labels=y).sample
    return out[:, : x.shape[1]] if out.shape[1] == 2 * x.shape[1] else out


def _disable_inner_label_dropout(model: DiTTransformer2DModel) -> None:
    # diffusers gives every DiT block its own label embedder, each dropping labels independently
    # from the global RNG; the trainer drops labels once per sample instead (as the original DiT).
    for module in model.modules():
        if hasattr(module, "class_embedder") and hasattr(module.class_embedder, "dropout_prob"):
            module.class_embedder.dropout_prob = 0.0


def _offline_error(what: str, ref: HubRef, exc: Exception) -> BenchError:
    return BenchError(
        f"cannot load {what} {ref.repo!r} (revision {ref.revision}): {type(exc).__name__}. "
        f"Offline? Use --profile tiny, or pre-fetch the weights on a machine with network "
        f"(`huggingface-cli download {ref.repo} --revision {ref.revision}`) and copy HF_HOME here."
    )


def verified_weights_file(spec: BackboneSpec) -> tuple[Path, str]:
    """The local weights file and its sha256, refusing a missing file or a hash mismatch."""
    path = ASSETS_DIR / spec.weights
    if not path.exists():
        raise BenchError(f"backbone weights {path} are missing; rebuild them with `bench build-tiny source`")
    digest = file_sha256(path)
    if spec.weights_sha256 and digest != spec.weights_sha256:
        raise BenchError(f"backbone weights {path} have sha256 {digest[:12]}..., the task expects "
                         f"{spec.weights_sha256[:12]}...; rebuild with `bench build-tiny source` or fix the task")
    return path, digest


def load_backbone(spec: BackboneSpec) -> Backbone:
    if spec.kind != "dit":
        raise unknown("backbone kind", spec.kind, ["dit"])
    if spec.weights is not None:
        path, digest = verified_weights_file(spec)
        model = DiTTransformer2DModel(**spec.config)
        model.load_state_dict(load_file(path))
    else:
        ref = spec.pretrained
        try:
            model = DiTTransformer2DModel.from_pretrained(ref.repo, subfolder=ref.subfolder, revision=ref.revision)
        except Exception as exc:
            raise _offline_error("backbone", ref, exc) from None
        digest = state_sha256(model.state_dict())
    vae = None
    if spec.vae is not None:
        try:
            vae = AutoencoderKL.from_pretrained(spec.vae.repo, subfolder=spec.vae.subfolder, revision=spec.vae.revision)
        except Exception as exc:
            raise _offline_error("VAE", spec.vae, exc) from None
        vae.requires_grad_(False).eval()
    _disable_inner_label_dropout(model)
    return Backbone(model, vae, spec.vae_scaling_factor, spec.num_source_classes, digest)


def noise_schedule(spec: DiffusionSpec) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=spec.num_train_timesteps, beta_schedule=spec.beta_schedule,
                         beta_start=spec.beta_start, beta_end=spec.beta_end, prediction_type="epsilon",
                         clip_sample=False)
