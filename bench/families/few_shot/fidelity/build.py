"""`bench build-tiny fidelity`: the few-shot family's tiny fidelity networks (tiny.py), trained on
source layouts; a family asset (`FewShot.tiny_assets`)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from bench.tiny_build import LAYOUT_SOURCE_SEED, layout_source, layout_source_eval, write_asset


def build_fidelity(steps: int = 800, batch_size: int = 64, lr: float = 2e-3, seed: int = 0, size: int = 32,
                   out: Path | None = None, log=print) -> str:
    """The few-shot family's tiny fidelity networks (bench/families/few_shot/fidelity/tiny.py), trained on 10000 source
    layouts; the manifest records held-out sanity checks of what each network is for."""
    from bench.families.few_shot.fidelity.tiny import WEIGHTS, train_fidelity

    t0 = time.time()
    state, info = train_fidelity(layout_source(10000, size), steps, batch_size, lr, seed, log)
    path = out or WEIGHTS
    digest = write_asset(path, state, {
        "command": f"bench build-tiny fidelity --steps {steps}", "steps": steps, "batch_size": batch_size, "lr": lr,
        "seed": seed, "image_size": size, "layout_seed": LAYOUT_SOURCE_SEED, **info,
        "held_out": fidelity_sanity(state, layout_source_eval(256, size)),
        "train_seconds": round(time.time() - t0, 1), "torch": torch.__version__})
    log(f"wrote {path} sha256={digest}; pin it in tasks/fewshot-corruption.yaml (params.fidelity_sha256)")
    return digest


def fidelity_sanity(state: dict, held) -> dict:
    """On held-out layouts: CLIP-T with the true vs a shuffled caption, CLIP-IQA of clean vs noisy
    copies, DINO cosine of two views of one image vs of different images."""
    from bench.families.few_shot.fidelity.tiny import TinyFidelity, augment, corrupt, to_input

    fid = TinyFidelity(state=state)
    gen = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        img = fid.clip_image(held.images)
        true = (img * fid.clip_text(held.captions)).sum(1)
        shuffled = (img * fid.clip_text(held.captions[1:] + held.captions[:1])).sum(1)
        x = to_input(held.images)
        noisy = ((corrupt(x, gen) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        a, b = fid.dino_net.embed(augment(x, gen)), fid.dino_net.embed(augment(x, gen))
        return {"clip_t_true_caption": float(true.mean()), "clip_t_shuffled_caption": float(shuffled.mean()),
                "clip_iqa_clean": float(fid.iqa(held.images).mean()), "clip_iqa_noisy": float(fid.iqa(noisy).mean()),
                "dino_same_image_two_views": float((a * b).sum(1).mean()),
                "dino_different_images": float((a @ b.T).fill_diagonal_(float("nan")).nanmean())}
