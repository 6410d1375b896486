"""Trainable-parameter accounting on a task's real backbone architecture, without its weights.

`count_parameters(method, backbone_spec)` builds the backbone's diffusers module on the meta
device (shapes only: no memory, no download, a fraction of a second even for DiT-XL-2), runs the
method's own `prepare()` on it exactly as the trainer does, and counts what
`trainable_parameters()` returns. The fraction is over the backbone as loaded (before any module
is injected), which is how the DiffFit paper states its shares.

The paper profile names hub weights rather than an architecture; the architectures of the hub
backbones the suite uses are pinned in `KNOWN_ARCHITECTURES` so counting works offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from bench.errors import BenchError
from bench.method import Method, TrainContext
from bench.spec import BackboneSpec

# facebook/DiT-XL-2-256, transformer/config.json: DiT-XL/2 (hidden 16 x 72 = 1152, 28 blocks,
# patch 2 on 32x32x4 SD-VAE latents, learned sigma so 8 output channels, 1000 classes + null).
# The remaining DiTTransformer2DModel arguments keep diffusers' defaults (gelu-approximate,
# attention bias, non-affine LayerNorm, eps 1e-5), which is what the converted checkpoint uses.
DIT_XL_2_256: dict[str, Any] = {
    "num_layers": 28, "num_attention_heads": 16, "attention_head_dim": 72, "in_channels": 4,
    "out_channels": 8, "patch_size": 2, "sample_size": 32, "num_embeds_ada_norm": 1000,
    "norm_type": "ada_norm_zero",
}
KNOWN_ARCHITECTURES: dict[tuple[str, str | None], dict[str, Any]] = {
    ("facebook/DiT-XL-2-256", "transformer"): DIT_XL_2_256,
}

# DiffFit Tab. 1 "Params" column as a share of DiT-XL-2, for side-by-side display. Only DiffFit's
# 0.12% is confirmed by a source we could read (the paper's abstract); the others are recalled
# (shared/notes/papers.md §2, marked [MEM]) and must be checked against the PDF.
DIFFFIT_REPORTED_PERCENT: dict[str, tuple[float, str]] = {
    "bitfit": (0.09, "recalled"),
    "lora": (0.17, "recalled, LoRA-R8"),
    "adaptformer": (0.63, "recalled"),
    "vpt-deep": (0.42, "recalled"),
    "difffit": (0.12, "abstract"),
}


@dataclass
class ParamCount:
    trainable: int
    backbone: int  # parameters of the backbone as loaded, before the method injects anything

    @property
    def fraction(self) -> float:
        return self.trainable / self.backbone


def architecture(spec: BackboneSpec) -> dict[str, Any]:
    """The DiTTransformer2DModel kwargs of a backbone spec."""
    if spec.config:
        return dict(spec.config)
    ref = spec.pretrained
    key = (ref.repo, ref.subfolder) if ref is not None else None
    if key in KNOWN_ARCHITECTURES:
        return dict(KNOWN_ARCHITECTURES[key])
    try:  # a hub backbone whose config is in the local hub cache
        from diffusers import DiTTransformer2DModel

        config = DiTTransformer2DModel.load_config(ref.repo, subfolder=ref.subfolder, revision=ref.revision,
                                                   local_files_only=True)
    except Exception:
        raise BenchError(f"the architecture of backbone {ref.repo!r} is not known offline; add it to "
                         f"bench.params.KNOWN_ARCHITECTURES or give the task's backbone a `config`") from None
    return {k: v for k, v in config.items() if not k.startswith("_")}


def build_without_weights(spec: BackboneSpec) -> torch.nn.Module:
    """The backbone's module with every tensor on the meta device (no allocation, no init cost)."""
    from diffusers import DiTTransformer2DModel

    if spec.kind != "dit":
        raise BenchError(f"parameter accounting knows backbone kind 'dit', not {spec.kind!r}")
    with torch.device("meta"):
        return DiTTransformer2DModel(**architecture(spec))


def count_parameters(method: Method, spec: BackboneSpec) -> ParamCount:
    from bench.backbone import Backbone

    model = build_without_weights(spec)
    backbone_total = sum(p.numel() for p in model.parameters())
    backbone = Backbone(model, None, spec.vae_scaling_factor, spec.num_source_classes, "architecture-only")
    # What prepare() may look at; a method that needs data to decide what trains cannot be counted.
    ctx = TrainContext(backbone=backbone, dataset=None, num_timesteps=0, batch_size=0,  # type: ignore[arg-type]
                       knowledge_bank=_no_bank)
    model = method.prepare(model, ctx)
    trainable = sum(p.numel() for _, p in method.trainable_parameters(model))
    return ParamCount(trainable, backbone_total)


def _no_bank():
    raise BenchError("parameter accounting runs without data; prepare() must not need the knowledge bank")
