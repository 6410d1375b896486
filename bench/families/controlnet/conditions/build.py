"""`bench build-tiny conditions`: the tiny condition estimators (tiny.py), trained on source layouts
with their exact maps; a family asset (`ControlNetFamily.tiny_assets`)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from bench.tiny_build import LAYOUT_SOURCE_SEED, layout_source, layout_source_eval, write_asset


def build_conditions(steps: int = 1500, batch_size: int = 32, lr: float = 2e-3, seed: int = 0, size: int = 32,
                     out: Path | None = None, log=print) -> str:
    """The tiny condition estimators, trained on 20000 source layouts with their exact maps."""
    from bench.families.controlnet.conditions.tiny import WEIGHTS, loss, targets, to_input, train_estimator

    t0 = time.time()
    net, info = train_estimator(layout_source(20000, size), steps, batch_size, lr, seed, log)
    held = layout_source_eval(1000, size)
    with torch.no_grad():
        held_loss = float(loss(net(to_input(held.images)), targets(held)))
    path = out or WEIGHTS
    digest = write_asset(path, net.state_dict(), {
        "command": f"bench build-tiny conditions --steps {steps}", "steps": steps, "batch_size": batch_size,
        "lr": lr, "seed": seed, "image_size": size, "layout_seed": LAYOUT_SOURCE_SEED, **info,
        "held_out_loss": held_loss, "train_seconds": round(time.time() - t0, 1), "torch": torch.__version__})
    log(f"wrote {path} sha256={digest} (held-out loss {held_loss:.4f}); pin it in tasks/controlnet-convergence.yaml")
    return digest
