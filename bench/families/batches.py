"""Training batches that several families (and `bench build-tiny source`) draw: labelled images
with classifier-free-guidance label dropout, unlabelled images, and captioned (or labelled) images
with condition maps. Each draws from torch's global RNG in a fixed order (the trainer seeds it per
step), so a family that uses one draws exactly what it drew before.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.data import ImageSet
from bench.families.base import random_images
from bench.spec import TrainSpec


def label_dropout(labels: torch.Tensor, null_class: int, p: float) -> torch.Tensor:
    """Classifier-free guidance's label dropout: each label becomes the null class with probability
    p, once per sample (as the original DiT), from torch's global RNG."""
    drop = torch.rand(len(labels)) < p
    return torch.where(drop, torch.full_like(labels, null_class), labels)


def labelled_batch(data: ImageSet, backbone, batch_size: int, spec: TrainSpec) -> dict[str, torch.Tensor]:
    """A target batch: random images (with flips), labels with classifier-free-guidance dropout."""
    idx, images = random_images(data, batch_size, spec)
    labels = label_dropout(torch.from_numpy(data.labels[idx.numpy()]).long(), backbone.null_class, spec.class_dropout)
    return {"x0": backbone.encode(images), "y": labels.to(backbone.device)}


def image_batch(data, backbone, batch_size: int, spec: TrainSpec) -> dict[str, torch.Tensor]:
    """Random training images with flips, in the denoiser's space."""
    return {"x0": backbone.encode(random_images(data, batch_size, spec)[1])}


def prompt_key(backbone) -> str:
    """The condition key that carries the prompt: "input_ids" (text) or "y" (class labels)."""
    return backbone.cond_keys[0]


class Captioned:
    """Images (uint8 NHWC tensor), their prompts as the backbone takes them (`ids`: token ids of
    the captions, or the class labels) and their condition maps (float NCHW)."""

    def __init__(self, images: np.ndarray, captions, maps: np.ndarray, tokenize, sha256: str = ""):
        self._sha256 = sha256
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.captions = captions
        self.ids = tokenize(captions) if tokenize is not None else torch.as_tensor(np.asarray(captions))
        self.maps = torch.from_numpy(np.ascontiguousarray(maps))

    def __len__(self) -> int:
        return len(self.images)

    def sha256(self) -> str:
        """Of images, maps and captions (what the base family records for the reference split)."""
        return self._sha256


def text_batch(data: Captioned, backbone, batch_size: int, empty_ratio: float, with_control: bool) -> dict:
    """A random training batch from torch's global RNG: images, prompts (dropped to the null
    prompt with `empty_ratio`) and, for a ControlNet, the condition maps."""
    idx = torch.randint(0, len(data), (batch_size,))
    key, ids = prompt_key(backbone), data.ids[idx]
    drop = torch.rand(batch_size) < empty_ratio
    null = backbone.null_cond({key: ids})[key]
    ids = torch.where(drop.view(-1, *[1] * (ids.dim() - 1)), null, ids)
    batch = {"x0": backbone.encode(data.images[idx]), key: ids}
    if with_control:
        batch["control"] = data.maps[idx]
    return batch
