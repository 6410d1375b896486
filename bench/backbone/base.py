"""What every backbone adapter shares: the `Backbone` interface, weight files and their hashes,
the noise schedule, and dispatch on the task's `backbone.kind`.

Paper weights come from the hub through diffusers' `from_pretrained`; tiny weights are the
project's own safetensors, checked against the sha256 pinned in the task file.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from safetensors.torch import load_file

from bench.errors import BenchError, unknown
from bench.hashing import file_sha256, state_sha256  # noqa: F401  (part of this module's interface)
from bench.method import DEFERRED_IMAGES
from bench.paths import ASSETS_DIR
from bench.spec import BackboneSpec, DiffusionSpec, HubRef, canonical_hash

if TYPE_CHECKING:  # diffusers' models take seconds to import; bad input should fail before that
    from diffusers import AutoencoderKL, DDPMScheduler

# kind -> "module:Class"; imported lazily so `bench ls` does not import every architecture.
ADAPTERS: dict[str, str] = {
    "dit": "bench.backbone.dit:DiTBackbone",
    "unet2d": "bench.backbone.unet2d:UNet2DBackbone",
    "sd": "bench.backbone.sd:SDBackbone",
    "sd-controlnet": "bench.backbone.sd:SDControlNetBackbone",
    "dit-controlnet": "bench.backbone.dit_controlnet:DiTControlNetBackbone",
    "ldm": "bench.backbone.ldm:LDMBackbone",
}

Cond = dict[str, torch.Tensor]  # the denoiser's condition, keys fixed by the adapter (`cond_keys`)


class Backbone:
    """A denoiser (`model`), an optional latent autoencoder and the adapter's conventions.

    Subclasses set `kind`, `cond_keys` and `groups`, and implement `output`, `null_cond`,
    `module_group`, `load` and `build_without_weights`."""

    kind: ClassVar[str] = ""
    cond_keys: ClassVar[tuple[str, ...]] = ()
    groups: ClassVar[dict[str, str]] = {}  # module group -> what it holds (shown by `bench ls`)
    denoiser_class: ClassVar[type] = type(None)  # the diffusers model class
    known_architectures: ClassVar[dict[tuple[str, str | None], dict[str, Any]]] = {}  # (repo, subfolder) -> kwargs
    # An adapter that adds trainable modules beside a base model (a ControlNet) names the kind whose
    # weights it starts from: a finished run of that kind can serve as its backbone (`from_run`).
    base_kind: ClassVar[str | None] = None
    vae_class: ClassVar[str] = "AutoencoderKL"  # the diffusers class of `backbone.vae` (LDM-4: VQModel)
    # Numerical conventions applied to the denoiser beyond its weights (`configure`): non-default
    # settings only, so a backbone on diffusers' defaults has none and keeps its cache keys.
    numerics: dict[str, Any] = {}
    guidance_channels: int | None = None  # classifier-free guidance on the first N channels only (sampling.py)
    # `backbone.init` schemes this adapter implements (`initialize`), e.g. DiT's own for from-scratch training
    init_schemes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, model: torch.nn.Module, vae: AutoencoderKL | None, vae_scaling_factor: float,
                 weights_sha256: str):
        self.model = model
        self.vae = vae
        self.vae_scaling_factor = vae_scaling_factor
        self.weights_sha256 = weights_sha256

    # -- the common interface ----------------------------------------------------------------
    def output(self, x: torch.Tensor, t: torch.Tensor, cond: Cond, model: torch.nn.Module | None = None) -> torch.Tensor:
        """The denoiser's raw output for noisy input x at timesteps t (one per sample): the noise
        prediction, followed by as many variance channels on a learned-sigma model. `model`
        defaults to this backbone's denoiser; analyses may pass another copy of it."""
        raise NotImplementedError

    def predict_with_variance(self, x, t, cond: Cond, model=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(noise prediction, learned-range variance values in [-1, 1] or None without learned sigma)."""
        out = self.output(x, t, cond, model)
        if out.shape[1] == 2 * x.shape[1]:
            return out[:, : x.shape[1]], out[:, x.shape[1]:]
        return out, None

    def predict(self, x: torch.Tensor, t: torch.Tensor, cond: Cond, model: torch.nn.Module | None = None) -> torch.Tensor:
        """The noise prediction (learned-sigma channels dropped)."""
        return self.predict_with_variance(x, t, cond, model)[0]

    def null_cond(self, cond: Cond) -> Cond:
        """The "unconditional" counterpart of `cond` (classifier-free guidance)."""
        raise NotImplementedError

    def module_group(self, name: str) -> list[tuple[str, torch.nn.Module]]:
        """(qualified name, module) pairs of a named group of the current `model`."""
        raise NotImplementedError

    @classmethod
    def load(cls, spec: BackboneSpec) -> "Backbone":
        raise NotImplementedError

    @classmethod
    def hub_refs(cls, spec: BackboneSpec) -> list[tuple[str, type, HubRef]]:
        """(what, diffusers class, hub reference) of every hub file the backbone needs."""
        return []

    @classmethod
    def preflight(cls, spec: BackboneSpec) -> None:
        """Fail before any work if local weights are missing or tampered with, or hub weights are
        neither cached nor reachable (e.g. offline)."""
        import warnings

        from huggingface_hub.utils import logging as hf_logging

        if spec.from_run is not None:
            from bench.backbone.from_run import check_source

            check_source(spec, cls, checkpoint=False)
            spec = spec.model_copy(update={"pretrained": None})  # its weights are the run's: only the VAE is fetched
        elif spec.weights is not None:
            verified_weights_file(spec)
        refs = cls.hub_refs(spec)
        if not refs:
            return
        online = hub_reachable()
        hf_logging.set_verbosity_error()
        for what, klass, ref in refs:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    klass.load_config(ref.repo, subfolder=ref.subfolder, revision=ref.revision,
                                      local_files_only=not online)
            except Exception as exc:
                raise offline_error(what, ref, exc) from None

    @classmethod
    def wrap_without_weights(cls, model: torch.nn.Module, spec: BackboneSpec) -> "Backbone":
        """A backbone around a model built without weights (parameter accounting)."""
        raise NotImplementedError

    @classmethod
    def from_scratch(cls, spec: BackboneSpec, with_vae: bool = False, fill=None) -> "Backbone":
        """A randomly initialised denoiser (from torch's global RNG): pre-training from scratch.
        `fill(model)`, if given, loads weights into the built base model before the adapter's
        extensions are made from it (a finished run's final state) and returns their sha256.
        `with_vae` also loads the task's (pre-trained, frozen) autoencoder, as latent models keep one."""
        kwargs = cls.architecture(spec)
        model = cls.finalize(cls.build(kwargs), loaded=False)
        if fill is None and spec.init is not None:
            cls.initialize(model, spec.init)
        digest = fill(model) if fill is not None else "scratch"
        backbone = cls.wrap_without_weights(cls.extend(model, kwargs), spec)  # e.g. a ControlNet copied from it
        backbone.weights_sha256 = digest
        backbone.configure(spec)
        if with_vae:
            backbone.vae = load_vae(spec)
        return backbone

    @classmethod
    def apply_numerics(cls, model: torch.nn.Module, spec: BackboneSpec) -> dict[str, Any]:
        """Set the spec's numerical conventions on a built or loaded denoiser, in place, and return
        the ones that differ from diffusers' defaults. Only DiT has any (bench/backbone/dit.py)."""
        for field in ("timestep_embedding", "mlp_norm_eps"):
            if getattr(spec, field) not in (None, "diffusers"):
                raise BenchError(f"backbone.{field} is a DiT setting; backbone kind {cls.kind!r} has no such option")
        return {}

    def configure(self, spec: BackboneSpec) -> "Backbone":
        """Apply the spec's numerical conventions (the original DiT's, for dit-transfer's paper
        profile) to this backbone's denoiser and record them; idempotent."""
        self.numerics = {**self.apply_numerics(self.model, spec),
                         **({"guidance_channels": spec.guidance_channels} if spec.guidance_channels else {})}
        self.guidance_channels = spec.guidance_channels
        return self

    @property
    def weights_key(self) -> str:
        """What samples, banks and Fishers drawn from this backbone are cached by: the weights'
        sha256, plus the numerics `configure` applied when there are any (the same weights sample
        differently under the original DiT's conventions)."""
        if not self.numerics:
            return self.weights_sha256
        return canonical_hash({"weights": self.weights_sha256, "numerics": self.numerics}, 64)

    @classmethod
    def check_init(cls, scheme: str | None) -> None:
        if scheme is not None and scheme not in cls.init_schemes:
            known = ", ".join(cls.init_schemes) or "none but diffusers' default"
            raise BenchError(f"backbone kind {cls.kind!r} has no initialisation {scheme!r} (it has: {known})")

    @classmethod
    def initialize(cls, model: torch.nn.Module, scheme: str) -> torch.nn.Module:
        """Re-initialise a freshly built (and finalized) denoiser in place with the paper code's own
        scheme (`backbone.init`), drawing from torch's global RNG."""
        cls.check_init(scheme)
        raise NotImplementedError  # an adapter that lists a scheme implements it

    # -- building and loading the denoiser (shared; adapters adjust `config_kwargs` and `build`) --
    @classmethod
    def config_kwargs(cls, config: dict[str, Any]) -> dict[str, Any]:
        """A task's architecture `config` as the kwargs of `build`."""
        return dict(config)

    @classmethod
    def build(cls, kwargs: dict[str, Any]) -> torch.nn.Module:
        return cls.denoiser_class(**kwargs)

    @classmethod
    def finalize(cls, model: torch.nn.Module, loaded: bool) -> torch.nn.Module:
        """Turn a built (and, if `loaded`, weight-loaded) diffusers model into the architecture the
        papers use, e.g. DiT's shared condition embedder. Runs after loading, so weights files keep
        diffusers' own layout; `loaded` asks the adapter to check the weights fit that form."""
        return model

    @classmethod
    def extend(cls, model: torch.nn.Module, kwargs: dict[str, Any]) -> torch.nn.Module:
        """Add the modules this adapter puts beside the base model (e.g. a ControlNet made from it),
        in place, once the base weights are loaded: those modules are copies of them."""
        return model

    @classmethod
    def base_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """The part of a task's architecture `config` that describes the base model (what a source
        run of `base_kind` must have trained)."""
        return config

    @classmethod
    def architecture(cls, spec: BackboneSpec) -> dict[str, Any]:
        """The `build` kwargs of a backbone spec, offline: its config, a pinned known architecture,
        or the config in the local hub cache."""
        if spec.config:
            return cls.config_kwargs(spec.config)
        ref = spec.pretrained
        key = (ref.repo, ref.subfolder) if ref is not None else None
        if key in cls.known_architectures:
            return dict(cls.known_architectures[key])
        try:
            config = cls.denoiser_class.load_config(ref.repo, subfolder=ref.subfolder, revision=ref.revision,
                                                    local_files_only=True)
        except Exception:
            raise BenchError(f"the architecture of backbone {ref.repo!r} is not known offline; add it to "
                             f"{cls.__module__}.KNOWN_ARCHITECTURES or give the task's backbone a `config`") from None
        return {k: v for k, v in config.items() if not k.startswith("_")}

    @classmethod
    def build_without_weights(cls, spec: BackboneSpec) -> torch.nn.Module:
        """The denoiser on the meta device (shapes only), for parameter accounting offline."""
        kwargs = cls.architecture(spec)
        with torch.device("meta"):
            return cls.extend(cls.finalize(cls.build(kwargs), loaded=False), kwargs)

    @classmethod
    def load_denoiser(cls, spec: BackboneSpec) -> tuple[torch.nn.Module, str]:
        """The denoiser and the sha256 of its weights: the project's file (checked against the
        task's pin) or the hub's pinned revision."""
        if spec.weights is not None:
            path, digest = verified_weights_file(spec)
            model = cls.build(cls.config_kwargs(spec.config))
            model.load_state_dict(load_file(path))
            return model, digest
        ref = spec.pretrained
        try:
            model = cls.denoiser_class.from_pretrained(ref.repo, subfolder=ref.subfolder, revision=ref.revision)
        except Exception as exc:
            raise offline_error("backbone", ref, exc) from None
        return model, state_sha256(model.state_dict())

    # -- shared ---------------------------------------------------------------------------------
    def group(self, name: str) -> list[torch.nn.Module]:
        if name not in self.groups:
            raise BenchError(f"backbone kind {self.kind!r} has no module group {name!r} "
                             f"(it has: {', '.join(self.groups)})")
        return [m for _, m in self.module_group(name)]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> "Backbone":
        self.model.to(device)
        if self.vae is not None:
            self.vae.to(device)
        return self

    @property
    def channels(self) -> int:
        return self.model.config.in_channels

    @property
    def sample_size(self) -> int:
        return self.model.config.sample_size

    @property
    def learned_sigma(self) -> bool:
        return self.model.config.out_channels == 2 * self.model.config.in_channels

    def encode(self, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """Images (NCHW float in [-1, 1], or uint8 NHWC) to the denoiser's space, `batch_size`
        images at a time: a 5k-image knowledge bank at 256 px is ~4 GB as float and far more as VAE
        activations, so large sets are converted and encoded chunk by chunk."""
        n = len(images)
        step = batch_size or n or 1
        return torch.cat([self._encode(images[i:i + step]) for i in range(0, n, step)]) if n else images

    def _encode(self, images: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if images.dtype == torch.uint8:
            images = images.permute(0, 3, 1, 2).float().div(127.5).sub(1)
        images = images.to(self.device, non_blocking=True)
        if self.vae is None:
            return images
        with torch.no_grad():
            out = self.vae.encode(images)
            # a KL autoencoder gives a distribution; a VQ one its pre-quantisation latents (LDM's encode)
            if not hasattr(out, "latent_dist"):
                z = out.latents
            elif noise is None:
                z = out.latent_dist.sample()
            else:  # the posterior sample with given noise: what sample() computes from the noise it draws
                z = out.latent_dist.mean + out.latent_dist.std * noise.to(out.latent_dist.mean)
            return z * self.vae_scaling_factor

    # -- encoding after sharding (bench/distributed.py) ------------------------------------------
    def latent_shape(self, n: int) -> tuple[int, ...]:
        """The shape `encode` gives for n images, without running the autoencoder."""
        return (n, self.channels, self.sample_size, self.sample_size)

    def encode_later(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The columns of a training batch whose images are encoded after the trainer shards it, so
        each data-parallel process runs the autoencoder on its own rows only. In pixel space (no
        autoencoder) encoding is a conversion and happens now: {"x0": images}. With one, {"x0": the
        posterior noise (a KL autoencoder: drawn now, for every row, from torch's global RNG, exactly
        what `encode` would draw here; a deterministic one: zeros), "pixels": the images};
        `finish_encoding` replaces "x0" by the rows' latents. Methods may read len(x0) and its
        shape meanwhile, not its values."""
        if self.vae is None:
            return {"x0": self.encode(images)}
        shape, dtype = self.latent_shape(len(images)), next(self.vae.parameters()).dtype
        draw = torch.randn if self._sampled_posterior else torch.zeros
        return {"x0": draw(shape, device=self.device, dtype=dtype), DEFERRED_IMAGES: images}

    @property
    def _sampled_posterior(self) -> bool:
        """A KL autoencoder's latents are a draw from its posterior; a VQ one's are deterministic."""
        return self.vae_class == "AutoencoderKL"

    def finish_encoding(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`batch` (or a process's share of it) with its deferred images encoded (see `encode_later`)."""
        if DEFERRED_IMAGES not in batch:
            return batch
        out = {k: v for k, v in batch.items() if k != DEFERRED_IMAGES}
        images, noise = batch[DEFERRED_IMAGES], batch["x0"]
        if len(images):
            out["x0"] = self._encode(images, noise if self._sampled_posterior else None)
        return out

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Denoiser space to uint8 NHWC images (on the CPU); the sampler calls it per sampling batch.
        A VQ autoencoder quantises before decoding, as LDM's decode_first_stage does."""
        if self.vae is not None:
            with torch.no_grad():
                x = self.vae.decode(x / self.vae_scaling_factor).sample
        return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()


def expand_preset(config: dict[str, Any], presets: dict[str, dict[str, Any]], kind: str) -> dict[str, Any]:
    """A backbone `config` with its `preset` (if any) expanded; the keys given override the preset's."""
    config = dict(config)
    preset = config.pop("preset", None)
    if preset is None:
        return config
    if preset not in presets:
        raise BenchError(f"unknown {kind} preset {preset!r} (known: {', '.join(presets)})")
    return {**presets[preset], **config}


def adapter_class(kind: str) -> type[Backbone]:
    if kind not in ADAPTERS:
        raise unknown("backbone kind", kind, ADAPTERS)
    module, attr = ADAPTERS[kind].split(":")
    return getattr(importlib.import_module(module), attr)


def load_backbone(spec: BackboneSpec) -> Backbone:
    """The task's backbone: pre-trained weights, or for `from_scratch` a random initialisation drawn
    from torch's global RNG (the runner seeds it with the run's seed first)."""
    if spec.from_scratch:
        return adapter_class(spec.kind).from_scratch(spec, with_vae=True)
    if spec.from_run is not None:  # the task's architecture, the source run's final weights
        from bench.backbone.from_run import load_into

        adapter = adapter_class(spec.kind)
        return adapter.from_scratch(spec, with_vae=True, fill=lambda model: load_into(model, spec, adapter))
    return adapter_class(spec.kind).load(spec).configure(spec)


def hub_reachable() -> bool:
    """Cheap check before huggingface_hub's retry loop (which takes ~40 s to give up offline)."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def offline_error(what: str, ref: HubRef, exc: Exception) -> BenchError:
    return BenchError(
        f"cannot load {what} {ref.repo!r} (revision {ref.revision}): {type(exc).__name__}. "
        f"Offline? Use --profile tiny, or pre-fetch the weights on a machine with network "
        f"(`huggingface-cli download {ref.repo} --revision {ref.revision}`) and copy HF_HOME here."
    )


def verified_weights_file(spec: BackboneSpec) -> tuple[Path, str]:
    """The local weights file and its sha256, refusing a missing file or a hash mismatch."""
    expanded = os.path.expandvars(spec.weights)
    if "$" in expanded:
        raise BenchError(f"backbone weights {spec.weights!r} name an unset environment variable; set it "
                         f"(see tasks/README.md) or use --profile tiny")
    path = ASSETS_DIR / expanded  # relative to bench/assets, or absolute
    if not path.exists():
        hint = f"rebuild them with `{rebuild_command(path)}`" if not Path(expanded).is_absolute() else \
            "convert or download them first (see the task file)"
        raise BenchError(f"backbone weights {path} are missing; {hint}")
    digest = file_sha256(path)
    if spec.weights_sha256 and digest != spec.weights_sha256:
        raise BenchError(f"backbone weights {path} have sha256 {digest[:12]}..., the task expects "
                         f"{spec.weights_sha256[:12]}...; rebuild with `{rebuild_command(path)}` or fix the task")
    return path, digest


def rebuild_command(weights: Path) -> str:
    """The command that builds a tiny source model: the one its manifest (beside it) records, which
    names the task whose tiny profile it serves (`bench build-tiny source` alone builds dit-transfer's,
    which other tasks cannot load)."""
    import json

    try:
        command = json.loads(weights.with_suffix(".json").read_text())["command"]
    except (OSError, ValueError, KeyError, TypeError):
        return "bench build-tiny source --task <the task>"
    return command


def load_vae(spec: BackboneSpec) -> AutoencoderKL | None:
    """The task's frozen autoencoder, of the class its adapter declares (`vae_class`)."""
    if spec.vae is None:
        return None
    try:
        import diffusers

        klass = getattr(diffusers, adapter_class(spec.kind).vae_class)
        vae = klass.from_pretrained(spec.vae.repo, subfolder=spec.vae.subfolder, revision=spec.vae.revision)
    except Exception as exc:
        raise offline_error("VAE", spec.vae, exc) from None
    return vae.requires_grad_(False).eval()


def noise_schedule(spec: DiffusionSpec) -> DDPMScheduler:
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=spec.num_train_timesteps, beta_schedule=spec.beta_schedule,
                         beta_start=spec.beta_start, beta_end=spec.beta_end, prediction_type="epsilon",
                         clip_sample=False)
