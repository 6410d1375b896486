"""Diff-Tuning's knowledge bank: images sampled once from the pre-trained backbone.

Generated on first use per (backbone weights, bank spec) and cached as uint8 safetensors under
the cache folder, keyed by a hash of both; the official code leaves this step undocumented
(an ImageFolder of 'pretrained_images'), here it is a named, hashed artefact of the harness.

The oracle bank (`knowledge_bank.oracle: true`, issue 30) replays real images of the source's own
training split instead: with it, "retention does not help" and "the bank is bad" come apart. The
source domain is read from the build manifest beside locally built weights (the tiny profile's).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from bench.atomic import cached_tensors
from bench.backbone import Backbone
from bench.errors import BenchError
from bench.paths import ASSETS_DIR, cache_dir
from bench.progress import phase
from bench.sampling import sample
from bench.spec import BackboneSpec, DiffusionSpec, KnowledgeBankSpec, SyntheticDataset, canonical_hash


def source_domain(backbone: BackboneSpec, what: str) -> SyntheticDataset:
    """The synthetic domain the backbone's weights were trained on, from their build manifest
    (`bench build-tiny source` writes `source_domain` beside the weights). `what` names the caller
    in the one-line refusal where the weights have none (published or run-derived weights)."""
    if backbone.weights is None or backbone.from_run is not None:
        raise BenchError(f"{what} needs the source's own data; this backbone has no build manifest naming its "
                         f"source domain (only locally built weights do)")
    manifest = (ASSETS_DIR / backbone.weights).with_suffix(".json")
    try:
        domain = json.loads(manifest.read_text())["source_domain"]
    except (OSError, ValueError, KeyError):
        raise BenchError(f"{what}: {manifest} does not name the source domain (source_domain)") from None
    return SyntheticDataset(**domain)


def oracle_bank(backbone: BackboneSpec, spec: KnowledgeBankSpec, image_size: int) -> tuple[torch.Tensor, str]:
    """uint8 NHWC: `num_images` real images of the source's training split, drawn without replacement
    by the bank's seed, and a key naming them (the images' sha256)."""
    from bench.data import synthetic
    from bench.features.cache import images_sha256

    train = synthetic(source_domain(backbone, "knowledge_bank.oracle"), "train", image_size)
    if spec.num_images > len(train.images):
        raise BenchError(f"knowledge_bank.oracle: num_images {spec.num_images} exceeds the source's "
                         f"{len(train.images)} training images")
    pick = np.sort(np.random.default_rng(spec.seed).choice(len(train.images), spec.num_images, replace=False))
    images = np.ascontiguousarray(train.images[pick])
    return torch.from_numpy(images), "oracle-" + images_sha256(images)[:16]


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
