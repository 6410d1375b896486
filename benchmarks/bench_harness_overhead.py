"""Harness overhead against a bare PyTorch/diffusers loop on the same tiny DiT.

Prints the time per training step and per sampling step of (a) a bare loop doing the same
forward, backward and optimizer step (resp. the same guided DDIM step), and (b) the harness's
`bench.trainer.train` (resp. `bench.sampling.sample`), and their ratio. The target is <= 1.03.

    python benchmarks/bench_harness_overhead.py [--steps 200] [--repeats 3]

Timings are medians over interleaved repeats, so background load hits both sides alike.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DiTTransformer2DModel

from bench.families.class_transfer import labelled_batch
from bench.backbone import DiTBackbone, noise_schedule
from bench.data import load_split
from bench.method import TrainContext
from bench.registry import build_method
from bench.sampling import sample
from bench.spec import TrainSpec
from bench.tasks import load_task


def fresh_model(cfg) -> DiTTransformer2DModel:
    torch.manual_seed(0)
    model = DiTTransformer2DModel(**cfg)
    for m in model.modules():  # same as the harness: labels dropped once, by the loop
        if hasattr(m, "class_embedder"):
            m.class_embedder.dropout_prob = 0.0
    return model


def bare_train(cfg, data, steps, batch, lr):
    model = fresh_model(cfg)
    model.train()
    sched = noise_schedule(load_task("dit-transfer", "tiny").spec.diffusion)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    images = torch.from_numpy(data.images).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    labels = torch.from_numpy(data.labels)
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(labels), (batch,))
        x0, y = images[idx], labels[idx]
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (batch,))
        out = model(sched.add_noise(x0, noise, t), timestep=t, class_labels=y).sample[:, :3]
        loss = (out - noise).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / steps


def harness_train(task, data, steps, batch, lr):
    model = fresh_model(task.spec.backbone.config)
    backbone = DiTBackbone(model, None, 1.0, task.spec.backbone.num_source_classes, "bench")
    spec = TrainSpec(batch_size=batch, steps=steps, lr=lr, checkpoint_every=10**9, hflip=False, class_dropout=0.1)
    ctx = TrainContext(backbone, task.spec.datasets["food101"], 1000, batch)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        train(build_method("full-ft"), ctx, lambda: labelled_batch(data, ctx.backbone, spec.batch_size, spec), spec, noise_schedule(task.spec.diffusion), seed=0, steps=steps,
              ckpt_dir=Path(tmp))
        # the harness also writes one final checkpoint: part of its cost, counted here
        return (time.perf_counter() - start) / steps


def bare_sample(cfg, n, steps, scale):
    model = fresh_model(cfg).eval()
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                          clip_sample=False)
    sched.set_timesteps(steps)
    y = torch.arange(n) % 10
    x = torch.randn(n, 3, 16, 16)
    start = time.perf_counter()
    with torch.no_grad():
        for t in sched.timesteps:
            both = torch.cat([x, x])
            out = model(both, timestep=t.expand(2 * n), class_labels=torch.cat([y, torch.full_like(y, 64)])).sample
            c, u = out[:, :3].chunk(2)
            x = sched.step(u + scale * (c - u), t, x).prev_sample
    return (time.perf_counter() - start) / steps


def harness_sample(task, n, steps, scale):
    backbone = DiTBackbone(fresh_model(task.spec.backbone.config), None, 1.0, 64, "bench")
    start = time.perf_counter()
    sample(backbone, torch.arange(n) % 10, diffusion=task.spec.diffusion, scheduler="ddim", steps=steps,
           guidance_scale=scale, batch_size=n, seed=0)
    return (time.perf_counter() - start) / steps


from bench.trainer import train  # noqa: E402  (after the helpers, to keep the file readable)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--sample-steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    task = load_task("dit-transfer", "tiny")
    data = load_split(task.spec.datasets["food101"], "train", 16)
    cfg = task.spec.backbone.config
    b, h, bs, hs = [], [], [], []
    for _ in range(args.repeats):  # interleaved, so drifting background load hits both sides
        b.append(bare_train(cfg, data, args.steps, 32, 1e-4))
        h.append(harness_train(task, data, args.steps, 32, 1e-4))
        bs.append(bare_sample(cfg, 250, args.sample_steps, 1.5))
        hs.append(harness_sample(task, 250, args.sample_steps, 1.5))
    tb, th, sb, sh = map(statistics.median, (b, h, bs, hs))
    print(f"train step  (batch 32): bare {tb * 1e3:7.2f} ms  harness {th * 1e3:7.2f} ms  ratio {th / tb:.3f}")
    print(f"sample step (250 imgs, cfg): bare {sb * 1e3:7.2f} ms  harness {sh * 1e3:7.2f} ms  ratio {sh / sb:.3f}")


if __name__ == "__main__":
    main()
