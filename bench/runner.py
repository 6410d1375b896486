"""One run = one (task, profile, method, dataset, seed): train, sample, extract, score, record."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bench import provenance
from bench.backbone import load_backbone, noise_schedule
from bench.data import load_split
from bench.errors import BenchError, unknown
from bench.evaluate import check_metric_names, compute_metrics
from bench.features import get_extractor
from bench.features.cache import cached_features, images_sha256
from bench.knowledge_bank import knowledge_bank
from bench.method import Method, TrainContext
from bench.paths import cache_dir
from bench.registry import build_method
from bench.results import SCHEMA_VERSION, result_path, run_config_hash, write_json_atomic
from bench.sampling import balanced_labels, sample
from bench.tasks import Task
from bench.trainer import train


@dataclass
class RunRequest:
    task: Task
    method_name: str
    overrides: dict[str, str]
    dataset: str
    seed: int
    steps: int | None = None
    force: bool = False
    resume: bool = False


def plan(task: Task, method_name: str, overrides: dict[str, str], datasets: list[str] | None,
         seeds: list[int] | None, steps: int | None) -> tuple[Method, list[str], list[int]]:
    """Validate everything a run needs before any work starts (bad input fails fast, writes nothing)."""
    method = build_method(method_name, overrides, family=task.file.family)
    names = datasets or list(task.spec.datasets)
    for name in names:
        if name not in task.spec.datasets:
            raise unknown(f"dataset for task {task.name} ({task.profile} profile)", name, task.spec.datasets)
    if steps is not None and steps <= 0:
        raise BenchError(f"--steps must be positive, got {steps}")
    check_metric_names(task.spec.evaluation.metrics)
    get_extractor(task.spec.evaluation.extractor)  # fails now, not after training, if weights are missing
    return method, names, list(seeds if seeds is not None else task.spec.seeds)


def budget(task: Task, steps: int | None) -> dict:
    train_spec = task.spec.train.model_dump()
    if steps is not None:
        train_spec["steps"] = steps
    return train_spec


def run_key(task: Task, method: Method, steps: int | None, dataset: str, seed: int) -> tuple[Path, str]:
    cfg_hash = run_config_hash(method.full_name, method.config_dict(), budget(task, steps))
    return result_path(task.key, task.profile, method.full_name, cfg_hash, dataset, seed), cfg_hash


def execute(req: RunRequest, method: Method, log=print) -> Path:
    task, spec = req.task, req.task.spec
    path, cfg_hash = run_key(task, method, req.steps, req.dataset, req.seed)
    if path.exists() and not req.force:
        log(f"skip   {path} (complete; --force to redo)")
        return path
    t0 = time.time()
    timings = {}
    torch.manual_seed(req.seed)
    dataset = spec.datasets[req.dataset]
    backbone = load_backbone(spec.backbone)
    schedule = noise_schedule(spec.diffusion)
    train_set = load_split(dataset, "train", spec.image_size)
    ref_set = load_split(dataset, "train" if spec.evaluation.reference == "train" else "eval", spec.image_size)

    bank_info: dict = {}

    def bank() -> torch.Tensor:
        if "latents" not in bank_info:
            if spec.knowledge_bank is None:
                raise BenchError(f"method {method.full_name} needs a knowledge bank, but task {task.name} "
                                 f"({task.profile}) declares no knowledge_bank section")
            # A pristine backbone: the one being trained may already carry injected modules.
            images, key = knowledge_bank(load_backbone(spec.backbone), spec.knowledge_bank, spec.diffusion)
            x = images.permute(0, 3, 1, 2).float().div(127.5).sub(1)
            bank_info.update(latents=backbone.encode(x), key=key, n=len(images))
        return bank_info["latents"]

    ctx = TrainContext(backbone=backbone, dataset=dataset, num_timesteps=spec.diffusion.num_train_timesteps,
                       batch_size=spec.train.batch_size, knowledge_bank=bank)
    steps = req.steps or spec.train.steps
    run_dir = cache_dir() / "runs" / hashlib.sha256(str(path.relative_to(path.parents[5])).encode()).hexdigest()[:16]
    tt = time.time()
    outcome = train(method, ctx, train_set, spec.train, schedule, seed=req.seed, steps=steps,
                    ckpt_dir=run_dir, resume=req.resume)
    timings["train_s"] = time.time() - tt

    ts = time.time()
    labels = balanced_labels(spec.sampling.num_samples, dataset.num_classes)
    images = sample(backbone, labels, diffusion=spec.diffusion, scheduler=spec.sampling.scheduler,
                    steps=spec.sampling.steps, guidance_scale=spec.sampling.guidance_scale,
                    batch_size=spec.sampling.batch_size, seed=10_000 + req.seed)
    timings["sample_s"] = time.time() - ts

    te = time.time()
    extractor = get_extractor(spec.evaluation.extractor)
    gen_feats, _ = cached_features(extractor, images, desc="features (generated)")
    ref_feats, ref_cached = cached_features(extractor, ref_set.images, desc="features (reference)")
    metrics = compute_metrics(gen_feats, ref_feats, spec.evaluation)
    timings["evaluate_s"] = time.time() - te

    final_state = method.state_dict(backbone.model)
    from bench.backbone import state_sha256

    result = {
        "schema": SCHEMA_VERSION,
        "task": task.name,
        "task_version": task.file.version,
        "family": task.file.family,
        "profile": task.profile,
        "dataset": req.dataset,
        "method": method.full_name,
        "method_config": method.config_dict(),
        "config_hash": cfg_hash,
        "seed": req.seed,
        "budget": budget(task, req.steps),
        "budget_override": req.steps is not None,
        "metrics": metrics,
        "training": {
            "steps": outcome.steps,
            "final_loss": outcome.final_loss,
            "loss_curve": outcome.loss_curve,
            "trainable_params": outcome.trainable_params,
            "total_params": sum(p.numel() for p in backbone.model.parameters()),
            "resumed_from_step": outcome.resumed_from,
            "learning_rate": method.learning_rate(spec.train.lr),
        },
        "samples": {"n": len(images), "sha256": images_sha256(images), "sampling_seed": 10_000 + req.seed},
        "reference": {"split": spec.evaluation.reference, "n": len(ref_set), "sha256": ref_set.sha256(),
                      "features_cached": ref_cached},
        "provenance": {
            **provenance.git_state(),
            "packages": provenance.package_versions(),
            "device": provenance.device_info(),
            "backbone_sha256": backbone.weights_sha256,
            "train_data_sha256": train_set.sha256(),
            "extractor": extractor.preprocessing(),
            "knowledge_bank": {k: v for k, v in bank_info.items() if k != "latents"} or None,
            "final_state_sha256": state_sha256(final_state),
            "wall_time_s": round(time.time() - t0, 3),
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
            "peak_memory_mb": round(provenance.peak_memory_mb(), 1),
        },
        "resolved_spec": task.resolved(),
    }
    write_json_atomic(path, result)
    log(f"wrote  {path}  " + "  ".join(f"{k}={_fmt(v)}" for k, v in metrics.items()))
    return path


def _fmt(v) -> str:
    if isinstance(v, dict) and "mean" in v:
        return f"{v['mean']:.5g}"
    return f"{v:.5g}" if isinstance(v, float) else str(v)
