"""Backbone adapters over diffusers models: one file per `kind`, one common interface.

The trainer, the sampler and the methods see a `Backbone` (bench.backbone.base): a denoiser call
`predict(x_t, t, cond)`, `encode`/`decode` between images and the denoiser's space, the condition
that classifier-free guidance uses as "unconditional", and named module groups (`blocks`,
`attention`, `mlp`, `norms`, `embeddings`, ...) that methods target instead of importing one
architecture's internals. A method declares the groups it needs (`Method.groups`); a backbone that
lacks one is a plan-time error. Adding a backbone = one file here + one line in `ADAPTERS`.
"""

from bench.backbone.base import (ADAPTERS, Backbone, adapter_class, file_sha256, load_backbone, noise_schedule,
                                 offline_error, state_sha256, verified_weights_file)

_LAZY = {"DiTBackbone", "disable_inner_label_dropout", "eps_prediction"}


def __getattr__(name: str):
    # The DiT adapter imports diffusers' models (seconds); load it when first asked for, so that
    # commands which fail on bad input, or never build a model, do not pay for it.
    if name in _LAZY:
        from bench.backbone import dit

        return getattr(dit, name)
    raise AttributeError(f"module 'bench.backbone' has no attribute {name!r}")

__all__ = ["ADAPTERS", "Backbone", "DiTBackbone", "adapter_class", "disable_inner_label_dropout", "eps_prediction",
           "file_sha256", "load_backbone", "noise_schedule", "offline_error", "state_sha256", "verified_weights_file"]
