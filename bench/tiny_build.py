"""Builds the tiny profile's shared committed assets: `bench build-tiny source|extractor`; a
family's own assets (`conditions`, `fidelity`) are built by the family (`Family.tiny_assets`) with
the helpers here.

- source: a task's tiny backbone (the class-conditional DiT of dit-transfer, the unconditional UNet
  of limited-data, ...) pre-trained from scratch on the 64-class synthetic source domain, through
  the same shared trainer as every fine-tuning run (method `full-ft` on a randomly initialised
  model, with the task's loss). Its architecture comes from the task's tiny profile, so there is
  one source of truth; the file is named after the backbone kind (`dit-source.safetensors`).
  A text-to-image backbone (kind `sd`, or `sd-controlnet` whose ControlNet is made from the UNet
  at load time) is pre-trained on captioned procedural layouts (bench/data/layouts.py), with 10% of
  captions dropped to the empty prompt for guidance; the file holds the UNet and the text encoder.
- extractor: the small CNN whose features the tiny profile's FID/KID use, trained to classify the
  source domain and every tiny target dataset jointly.

All are deterministic on CPU; each writes a safetensors file and a JSON manifest (command,
settings, sha256) next to it. The task file pins the source model's sha256.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from bench.atomic import atomic_write
from bench.backbone import adapter_class, file_sha256, noise_schedule
from bench.families.batches import image_batch, labelled_batch
from bench.data import ImageSet, load_split, synthetic
from bench.method import TrainContext
from bench.paths import ASSETS_DIR, cache_dir
from bench.spec import SyntheticDataset, TrainSpec, canonical_hash
from bench.tasks import load_task

SOURCE = SyntheticDataset(generator="source-shapes", num_train=20000, num_eval=2000, seed=0)
LAYOUT_SOURCE_SEED = 7  # the text-to-image source domain and the estimators' data: layouts unlike any task's seed


def layout_source(n: int, size: int):
    from bench.data.layouts import generate_layouts

    return generate_layouts(n, np.random.default_rng([LAYOUT_SOURCE_SEED, 0]), size)


def write_asset(path: Path, state: dict, manifest: dict) -> str:
    with atomic_write(path) as tmp:
        # clone: tied modules (DiT's shared embedder) appear under several names; safetensors wants
        # one tensor per name, in the layout plain diffusers loads.
        save_file({k: v.detach().clone().contiguous() for k, v in state.items()}, tmp)
    digest = file_sha256(path)
    manifest = {**manifest, "sha256": digest, "file": path.name}
    path.with_suffix(".json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return digest


def build_source(task_name: str = "dit-transfer", steps: int = 6000, batch_size: int = 64, lr: float = 5e-4,
                 seed: int = 0, out: Path | None = None, log=print) -> str:
    from baselines.full_ft import FullFineTuning
    from bench.trainer import train

    task = load_task(task_name, "tiny")
    spec = task.spec
    kind = "sd" if spec.backbone.kind == "sd-controlnet" else spec.backbone.kind  # the ControlNet comes later
    torch.manual_seed(seed)
    backbone = adapter_class(kind).from_scratch(spec.backbone)
    model = backbone.model.requires_grad_(True)  # a text-to-image source trains its text encoder too
    train_spec = TrainSpec(batch_size=batch_size, steps=steps, lr=lr, checkpoint_every=500, class_dropout=0.1,
                           loss=spec.train.loss, vlb_weight=spec.train.vlb_weight)
    # Conditional backbones learn the source labels (and the null class); unconditional ones the
    # images; text-to-image ones captioned layouts.
    if "input_ids" in backbone.cond_keys:
        from bench.families.batches import Captioned, text_batch

        lay = layout_source(20000, spec.image_size)
        data = Captioned(lay.images, lay.captions, np.zeros((len(lay), 0, 1, 1), np.float32), backbone.tokenize)

        def batch(data, backbone, size, train):
            return text_batch(data, backbone, size, train.class_dropout, with_control=False)
    else:
        data = synthetic(SOURCE, "train", spec.image_size)
        batch = labelled_batch if "y" in backbone.cond_keys else image_batch
    ctx = TrainContext(backbone=backbone, dataset=None, num_timesteps=spec.diffusion.num_train_timesteps,
                       batch_size=batch_size)
    t0 = time.time()
    run_key = canonical_hash({"task": task_name, "kind": kind, "config": spec.backbone.config,
                              "loss": [spec.train.loss, spec.train.vlb_weight], "diffusion": spec.diffusion.key()})
    outcome = train(FullFineTuning(), ctx, lambda: batch(data, backbone, train_spec.batch_size, train_spec),
                    train_spec, noise_schedule(spec.diffusion), seed=seed, steps=steps, resume=True,
                    ckpt_dir=cache_dir() / "build-tiny-source" / f"{run_key}-{steps}-{batch_size}-{lr}-{seed}")
    path = out or ASSETS_DIR / "tiny" / f"{kind}-source.safetensors"
    digest = write_asset(path, model.state_dict(), {
        "command": f"bench build-tiny source --task {task_name} --steps {steps} --batch-size {batch_size} --lr {lr}",
        "task": task_name, "source_domain": SOURCE.model_dump(), "config": spec.backbone.config, "steps": steps,
        "batch_size": batch_size, "lr": lr, "seed": seed, "final_loss": outcome.final_loss,
        "train_seconds": round(time.time() - t0, 1), "torch": torch.__version__})
    log(f"wrote {path} sha256={digest} (final loss {outcome.final_loss:.4f}); pin it in tasks/*.yaml")
    return digest


def layout_source_eval(n: int, size: int):
    from bench.data.layouts import generate_layouts

    return generate_layouts(n, np.random.default_rng([LAYOUT_SOURCE_SEED, 1]), size)


def _extractor_data(task_name: str) -> ImageSet:
    task = load_task(task_name, "tiny")
    sets = [synthetic(SOURCE, "train", task.spec.image_size)]
    offset = [0, task.spec.backbone.num_source_classes]
    for ds in task.spec.datasets.values():
        s = load_split(ds, "train", task.spec.image_size)
        sets.append(ImageSet(s.images, s.labels + offset[-1]))
        offset.append(offset[-1] + ds.num_classes)
    return ImageSet(np.concatenate([s.images for s in sets]), np.concatenate([s.labels for s in sets]))


def build_extractor(task_name: str = "dit-transfer", steps: int = 3000, batch_size: int = 128, lr: float = 2e-3,
                    seed: int = 0, out: Path | None = None, log=print) -> str:
    from bench.features.tiny import TinyCNN

    data = _extractor_data(task_name)
    num_classes = int(data.labels.max()) + 1
    torch.manual_seed(seed)
    net = TinyCNN(num_classes)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.time()
    for step in range(steps):
        idx = torch.randint(0, len(data), (batch_size,), generator=gen)
        x = data.tensor(idx)
        x = torch.where((torch.rand(batch_size, generator=gen) < 0.5)[:, None, None, None], x.flip(-1), x)
        _, logits = net(x)
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(data.labels[idx.numpy()]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0:
            log(f"extractor step {step} loss {loss.item():.3f}")
    net.eval()
    with torch.no_grad():
        idx = torch.randperm(len(data), generator=gen)[:4000]
        acc = (net(data.tensor(idx))[1].argmax(1).numpy() == data.labels[idx.numpy()]).mean()
    path = out or ASSETS_DIR / "tiny" / "extractor.safetensors"
    digest = write_asset(path, net.state_dict(), {
        "command": f"bench build-tiny extractor --steps {steps}", "num_classes": num_classes, "steps": steps,
        "batch_size": batch_size, "lr": lr, "seed": seed, "train_accuracy": float(acc),
        "train_seconds": round(time.time() - t0, 1), "torch": torch.__version__})
    log(f"wrote {path} sha256={digest} (train accuracy {acc:.3f})")
    return digest
