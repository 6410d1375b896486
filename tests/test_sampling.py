"""Sampling and the knowledge bank."""

import pytest
import torch

from bench.backbone import load_backbone
from bench.knowledge_bank import bank_path, knowledge_bank
from bench.sampling import sample
from bench.tasks import load_task


def _setup():
    task = load_task("dit-transfer", "tiny")
    return task, load_backbone(task.spec.backbone)


@pytest.mark.parametrize("scheduler", ["ddim", "ddpm"])  # DDPM draws fresh noise at every step
def test_samples_do_not_depend_on_batch_size_and_follow_the_seed(scheduler):
    task, backbone = _setup()
    labels = torch.arange(6) % 4
    kw = dict(diffusion=task.spec.diffusion, scheduler=scheduler, steps=3, guidance_scale=1.5, seed=3)
    a = sample(backbone, labels, batch_size=6, **kw)
    b = sample(backbone, labels, batch_size=4, **kw)
    assert a.dtype == torch.uint8 and a.shape == (6, 16, 16, 3)
    assert torch.equal(a, b)
    assert not torch.equal(a, sample(backbone, labels, batch_size=6, **{**kw, "seed": 4}))
    assert torch.equal(a[:4], sample(backbone, labels[:4], batch_size=4, **kw))  # nor on the images after it


def test_denoiser_swap_is_used_on_the_requested_steps():
    task, backbone = _setup()
    calls = []

    def pick(i, n):
        calls.append((i, n))
        return backbone.model

    sample(backbone, torch.zeros(2, dtype=torch.long), diffusion=task.spec.diffusion, scheduler="ddim", steps=5,
           guidance_scale=1.0, batch_size=2, seed=0, denoiser_at=pick)
    assert calls == [(i, 5) for i in range(5)]


def test_knowledge_bank_is_generated_once_and_cached_by_hash(isolated_dirs):
    task, backbone = _setup()
    spec = task.spec.knowledge_bank.model_copy(update={"num_images": 6, "steps": 3, "batch_size": 6})
    images, key = knowledge_bank(backbone, spec, task.spec.diffusion)
    path = bank_path(backbone, spec, task.spec.diffusion)
    assert path.exists() and path.stem == key and images.shape == (6, 16, 16, 3)
    mtime = path.stat().st_mtime_ns
    again, key2 = knowledge_bank(backbone, spec, task.spec.diffusion)
    assert key2 == key and torch.equal(again, images) and path.stat().st_mtime_ns == mtime
    other = spec.model_copy(update={"seed": 1})
    assert bank_path(backbone, other, task.spec.diffusion) != path
