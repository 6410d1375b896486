"""Diff-Tuning's knowledge bank: images sampled once from the pre-trained backbone.

Generated on first use per (backbone weights, bank spec) and cached as uint8 safetensors under
the cache folder, keyed by a hash of both; the official code leaves this step undocumented
(an ImageFolder of 'pretrained_images'), here it is a named, hashed artefact of the harness.
"""

from __future__ import annotations

from pathlib import Path

import torch
from bench.atomic import cached_tensors
from bench.backbone import Backbone
from bench.paths import cache_dir
from bench.progress import phase
from bench.sampling import sample
from bench.spec import DiffusionSpec, KnowledgeBankSpec, canonical_hash


def bank_path(backbone: Backbone, spec: KnowledgeBankSpec, diffusion: DiffusionSpec) -> Path:
    key = canonical_hash({"weights": backbone.weights_key, "bank": spec.model_dump(),
                          "diffusion": diffusion.key()})
    return cache_dir() / "knowledge-banks" / f"{key}.safetensors"


def knowledge_bank(backbone: Backbone, spec: KnowledgeBankSpec, diffusion: DiffusionSpec) -> tuple[torch.Tensor, str]:
    """uint8 NHWC images and the file's key. Source classes are drawn uniformly, as a stand-in for
    the pre-training distribution; the trainer labels them with the null class."""
    path = bank_path(backbone, spec, diffusion)

    def make() -> dict[str, torch.Tensor]:
        phase(f"bank   sampling {spec.num_images} images from the pre-trained model (once; cached in {path.parent})")
        labels = torch.randint(0, backbone.num_source_classes, (spec.num_images,),
                               generator=torch.Generator().manual_seed(spec.seed))
        return {"images": sample(backbone, labels, diffusion=diffusion, scheduler=spec.scheduler, steps=spec.steps,
                                 guidance_scale=spec.guidance_scale, batch_size=spec.batch_size, seed=spec.seed,
                                 desc="knowledge bank")}

    return cached_tensors(path, make)["images"], path.stem
