"""Per-timestep epsilon MSE (issue 30, 1a): how well the pre-trained model and a fine-tuned one
denoise the target's evaluation images at each timestep.

Diff-Tuning's chain of forgetting says transfer lives near the noise end: the fine-tuned model
should gain most over the pre-trained one at large t, and little near t = 0, where the pre-trained
model already denoises any image. No sampling: one forward pass per (image, timestep) and model.
The images (the first `num_images` of the target's evaluation split, with their labels), the
timesteps (the centre of each of `buckets` equal buckets of 0..T-1) and the noise (one generator
per timestep, seeded from NOISE_SEED and t) are the same for every model, run and seed, so the
ratio to the pre-trained model at a timestep compares the two denoisers on identical inputs.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import torch

from bench import provenance
from bench.analysis import result_header
from bench.backbone import Backbone, load_backbone, noise_schedule
from bench.data import load_split
from bench.errors import BenchError
from bench.features.cache import images_sha256
from bench.paths import results_dir
from bench.planning import PlannedRun
from bench.results import method_folder, write_json_atomic
from bench.runner import load_finetuned, rebuild_checkpoint
from bench.spec import canonical_hash
from bench.tasks import Task

NAME = "eps-mse"
DEFAULT_BUCKETS = 20
DEFAULT_IMAGES = 256
NOISE_SEED = 3030
BATCH = 256


def timesteps(buckets: int, num_train_timesteps: int) -> list[int]:
    """The centre of each of `buckets` equal buckets of 0..T-1 (T = 1000, 20 buckets: 25, 75, ..., 975)."""
    if buckets <= 0 or buckets > num_train_timesteps:
        raise BenchError(f"--buckets must lie in 1..{num_train_timesteps}, got {buckets}")
    width = num_train_timesteps / buckets
    return [min(int((k + 0.5) * width), num_train_timesteps - 1) for k in range(buckets)]


def noise_for(t: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(NOISE_SEED * 100_003 + t))


@torch.no_grad()
def eps_mse(backbone: Backbone, x0: torch.Tensor, labels: torch.Tensor, ts: list[int], schedule,
            batch_size: int = BATCH) -> list[float]:
    """Mean over images and pixels of (eps_theta(x_t, t, y) - eps)^2 at each timestep, with x_t built
    from `x0` (the denoiser's space) and `noise_for(t)`."""
    out = []
    for t in ts:
        noise = noise_for(t, tuple(x0.shape))
        total = 0.0
        for i in range(0, len(x0), batch_size):
            x, e, y = x0[i:i + batch_size], noise[i:i + batch_size], labels[i:i + batch_size]
            tt = torch.full((len(x),), t, dtype=torch.long)
            x_t = schedule.add_noise(x, e, tt)
            eps = backbone.predict(x_t, tt, {"y": y})
            total += float((eps - e).pow(2).flatten(1).mean(1).sum())
        out.append(total / len(x0))
    return out


def analysis_path(run: PlannedRun, config_hash: str) -> Path:
    task = run.task
    return (results_dir() / task.key / task.profile / "analysis" / NAME / method_folder(run.method) / config_hash
            / run.dataset / f"seed{run.seed}.json")


def analysis_config_hash(task: Task, run_config_hash: str, ts: list[int], num_images: int) -> str:
    return canonical_hash({"analysis": NAME, "run": run_config_hash, "timesteps": ts, "num_images": num_images,
                           "noise_seed": NOISE_SEED, "diffusion": task.spec.diffusion.key()})


def target_images(task: Task, dataset: str, n: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The first n images of the target's evaluation split (uint8 NHWC), their labels and sha256."""
    split = load_split(task.spec.datasets[dataset], "eval", task.spec.image_size)
    if n > len(split):
        raise BenchError(f"--num-images {n} exceeds the {len(split)} evaluation images of {dataset}")
    images = torch.from_numpy(split.images[:n].copy())
    return images, torch.from_numpy(split.labels[:n].copy()).long(), images_sha256(images)


def run(planned: PlannedRun, *, buckets: int = DEFAULT_BUCKETS, num_images: int = DEFAULT_IMAGES,
        force: bool = False, retrain: bool = False, log=print) -> Path:
    """The per-timestep epsilon MSE of one finished run's final model and of the pre-trained model."""
    from bench.checkpoints import latest_checkpoint

    task, dataset, seed = planned.task, planned.dataset, planned.seed
    spec = task.spec
    if num_images <= 0:
        raise BenchError(f"--num-images must be positive, got {num_images}")
    ts = timesteps(buckets, spec.diffusion.num_train_timesteps)
    cfg = analysis_config_hash(task, planned.config_hash, ts, num_images)
    path = analysis_path(planned, cfg)
    if path.exists() and not force:
        log(f"skip   {path} (complete; --force to redo)")
        return path
    t0 = time.time()
    rebuilt = None
    if retrain and latest_checkpoint(planned.checkpoint_dir) is None:
        rebuilt = rebuild_checkpoint(planned, planned.build_method(), log=log)
    finetuned, run_path = load_finetuned(planned, planned.build_method())
    pretrained = load_backbone(spec.backbone)
    pretrained.model.eval()
    images, labels, sha = target_images(task, dataset, num_images)
    x0 = pretrained.encode(images)
    schedule = noise_schedule(spec.diffusion)
    base = eps_mse(pretrained, x0, labels, ts, schedule)
    tuned = eps_mse(finetuned, x0, labels, ts, schedule)
    points = [{"t": t, "mse_pretrained": b, "mse": m, "relative": m / b if b > 0 else None}
              for t, b, m in zip(ts, base, tuned)]
    log(f"       {task.key} [{task.profile}] {planned.method} {dataset} seed{seed}: eps-MSE / pre-trained "
        + " ".join(f"t{p['t']}={p['relative']:.3f}" for p in points[:: max(1, len(points) // 5)]))
    import json

    run_result = json.loads(run_path.read_text())
    result = {
        **result_header(NAME, task, dataset, planned.method),
        "method_config": planned.method_config,
        "config_hash": cfg,
        "run_config_hash": planned.config_hash,
        "seed": seed,
        "timesteps": ts,
        "buckets": buckets,
        "num_images": num_images,
        "noise_seed": NOISE_SEED,
        "images": {"split": "eval", "first": num_images, "sha256": sha},
        "points": points,
        "run": {"result": str(run_path.relative_to(results_dir())),
                "result_sha256": hashlib.sha256(run_path.read_bytes()).hexdigest(),
                "final_state_sha256": run_result.get("provenance", {}).get("final_state_sha256"),
                # None: the run's own checkpoint; else the re-trained model's state against the recorded one
                "rebuilt": rebuilt},
        "provenance": {
            **provenance.git_state(),
            "packages": provenance.package_versions(),
            "device": provenance.device_info(),
            "backbone_sha256": pretrained.weights_sha256,
            "wall_time_s": round(time.time() - t0, 3),
        },
        "resolved_spec": planned.resolved_spec,
    }
    write_json_atomic(path, result)
    log(f"wrote  {path}")
    return path
