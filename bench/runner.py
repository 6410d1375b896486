"""One run = one (task, profile, method, dataset, seed): train, sample, extract, score, record."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bench import provenance
from bench.atomic import atomic_write
from bench.backbone import load_backbone, noise_schedule, state_sha256
from bench.data import load_split
from bench.errors import BenchError, unknown
from bench.evaluate import check_metric_names, evaluate_images, extractors_needed
from bench.features import get_extractor
from bench.features.cache import images_sha256
from bench.knowledge_bank import knowledge_bank
from bench.method import Method, TrainContext
from bench.paths import cache_dir
from bench.registry import build_method
from bench.results import SCHEMA_VERSION, result_path, run_config_hash, write_json_atomic
from bench.sampling import balanced_labels, sample
from bench.spec import canonical_hash
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
    device: str = "auto"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return torch.device(name)


def plan(task: Task, method_name: str, overrides: dict[str, str], datasets: list[str] | None,
         seeds: list[int] | None, steps: int | None) -> tuple[Method, list[str], list[int]]:
    """Validate everything a run needs before any work starts (bad input fails fast, writes nothing)."""
    method = build_method(method_name, overrides, family=task.file.family)
    preflight_weights(task)
    names = datasets or list(task.spec.datasets)
    for name in names:
        if name not in task.spec.datasets:
            raise unknown(f"dataset for task {task.name} ({task.profile} profile)", name, task.spec.datasets)
    if steps is not None and steps <= 0:
        raise BenchError(f"--steps must be positive, got {steps}")
    check_metric_names(task.spec.evaluation.metrics)
    for name in extractors_needed(task.spec.evaluation.metrics, task.spec.evaluation.extractor):
        get_extractor(name)  # fails now, not after training, if weights are missing
    return method, names, list(seeds if seeds is not None else task.spec.seeds)


def _hub_reachable() -> bool:
    """Cheap check before huggingface_hub's retry loop (which takes ~40 s to give up offline)."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def preflight_weights(task: Task) -> None:
    """Fail before any work if local weights are missing or tampered with, or hub weights are
    neither cached nor reachable (e.g. offline)."""
    import warnings

    from diffusers import AutoencoderKL, DiTTransformer2DModel
    from huggingface_hub.utils import logging as hf_logging

    from bench.backbone import _offline_error, verified_weights_file

    spec = task.spec.backbone
    if spec.weights is not None:
        verified_weights_file(spec)
    refs = [(w, c, r) for w, c, r in (("backbone", DiTTransformer2DModel, spec.pretrained),
                                      ("VAE", AutoencoderKL, spec.vae)) if r is not None]
    if not refs:
        return
    online = _hub_reachable()
    hf_logging.set_verbosity_error()
    for what, cls, ref in refs:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cls.load_config(ref.repo, subfolder=ref.subfolder, revision=ref.revision, local_files_only=not online)
        except Exception as exc:
            raise _offline_error(what, ref, exc) from None


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
    device = resolve_device(req.device)
    backbone = load_backbone(spec.backbone).to(device)
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
            images, key = knowledge_bank(load_backbone(spec.backbone).to(device), spec.knowledge_bank, spec.diffusion)
            x = images.permute(0, 3, 1, 2).float().div(127.5).sub(1)
            bank_info.update(latents=backbone.encode(x), key=key, n=len(images))
        return bank_info["latents"]

    ctx = TrainContext(backbone=backbone, dataset=dataset, num_timesteps=spec.diffusion.num_train_timesteps,
                       batch_size=spec.train.batch_size, knowledge_bank=bank)
    steps = req.steps or spec.train.steps
    run_dir = checkpoint_dir(path)
    backbone_params = sum(p.numel() for p in backbone.model.parameters())  # before any injected module
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
    metrics, extractor_info = evaluate_images(images, ref_set.images, spec.evaluation,
                                              gen_labels=labels.numpy(), ref_labels=ref_set.labels)
    if "ewc" in spec.evaluation.metrics:
        metrics["ewc"] = ewc_metric(task, method, backbone, bank, schedule, device)
    timings["evaluate_s"] = time.time() - te

    final_state = method.state_dict(backbone.model)
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
            "total_params": backbone_params,  # the backbone alone, before injected modules
            "trainable_fraction": outcome.trainable_params / backbone_params,
            "resumed_from_step": outcome.resumed_from,
            "learning_rate": method.learning_rate(spec.train.lr),
        },
        "samples": {"n": len(images), "sha256": images_sha256(images), "sampling_seed": 10_000 + req.seed},
        "reference": {"split": spec.evaluation.reference, "n": len(ref_set), "sha256": ref_set.sha256()},
        "provenance": {
            **provenance.git_state(),
            "packages": provenance.package_versions(),
            "device": provenance.device_info(),
            "backbone_sha256": backbone.weights_sha256,
            "train_data_sha256": train_set.sha256(),
            "extractors": extractor_info,
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


EWC_SAMPLES, EWC_SEED = 256, 0


def ewc_metric(task: Task, method: Method, backbone, bank, schedule, device) -> dict | None:
    """EWC of the tuned parameters against the pre-trained backbone (Diff-Tuning's forgetting
    analysis). The diagonal Fisher is taken on the knowledge bank (the pre-trained model's own
    samples, with the null class) and cached per (backbone, bank), so every method of a task is
    measured with the same Fisher. None for methods whose tuned parameters have no pre-trained
    value (e.g. LoRA factors)."""
    from safetensors.torch import load_file, save_file

    from bench.metrics.ewc import diagonal_fisher, ewc

    pretrained = load_backbone(task.spec.backbone).to(device)
    latents = bank()
    key = canonical_hash({"weights": pretrained.weights_sha256, "bank": images_sha256(latents.cpu()),
                          "n": EWC_SAMPLES, "seed": EWC_SEED})
    path = cache_dir() / "fisher" / f"{key}.safetensors"
    if path.exists():
        fisher = load_file(path)
    else:
        fisher = diagonal_fisher(pretrained.model, schedule, latents, null_class=pretrained.null_class,
                                 num_samples=min(EWC_SAMPLES, len(latents)), seed=EWC_SEED)
        with atomic_write(path) as tmp:
            save_file({k: v.contiguous().cpu() for k, v in fisher.items()}, tmp)
    names = [n for n, _ in method.trainable_parameters(backbone.model)]
    theta_pre = dict(pretrained.model.named_parameters())
    if not any(n in theta_pre for n in names):
        return None
    out = ewc(fisher, dict(backbone.model.named_parameters()), theta_pre, names)
    return out | {"fisher_samples": min(EWC_SAMPLES, len(latents)), "fisher_seed": EWC_SEED, "fisher_data": "knowledge bank"}


def _fmt(v) -> str:
    if isinstance(v, dict):
        if "mean" in v:
            return f"{v['mean']:.5g}"
        if "total" in v:
            return f"{v['total']:.5g}"
        return "/".join(f"{x:.3g}" for x in v.values() if isinstance(x, float))
    return f"{v:.5g}" if isinstance(v, float) else str(v)


def checkpoint_dir(result_file: Path) -> Path:
    """Where a run keeps its checkpoints; the last one holds the final method state."""
    rel = str(result_file.relative_to(result_file.parents[5]))
    return cache_dir() / "runs" / hashlib.sha256(rel.encode()).hexdigest()[:16]


def load_finetuned(task: Task, method: Method, dataset: str, seed: int, steps: int | None = None):
    """The fine-tuned backbone of a finished run (for analyses such as the chain of forgetting).
    Returns (backbone, result_file)."""
    from bench.trainer import latest_checkpoint, load_checkpoint_state

    path, _ = run_key(task, method, steps, dataset, seed)
    if not path.exists():
        raise BenchError(f"no finished run at {path}; run `bench run --task {task.name} --method "
                         f"{method.full_name} --profile {task.profile} --dataset {dataset} --seeds {seed}` first")
    ckpt = latest_checkpoint(checkpoint_dir(path))
    if ckpt is None:
        raise BenchError(f"the checkpoints of {path} are not in this cache ({checkpoint_dir(path)}); "
                         f"rerun with --force to recreate them")
    backbone = load_backbone(task.spec.backbone)
    dataset_spec = task.spec.datasets[dataset]
    ctx = TrainContext(backbone=backbone, dataset=dataset_spec, num_timesteps=task.spec.diffusion.num_train_timesteps,
                       batch_size=task.spec.train.batch_size, knowledge_bank=lambda: None)
    from bench.trainer import step_seed

    torch.manual_seed(step_seed(seed, -1))  # same injected-module init as in training
    backbone.model = method.prepare(backbone.model, ctx)
    method.load_state_dict(backbone.model, load_checkpoint_state(ckpt))
    backbone.model.eval()
    return backbone, path
