"""The chain of forgetting (Diff-Tuning, Fig. 1): sample with the fine-tuned model, but let the
pre-trained denoiser run a growing fraction of the reverse steps, starting from the data end.

If transfer mostly lives near the noise end (the paper's claim), handing the last steps back to
the pre-trained model costs little FID, and handing over the steps near the noise end costs a lot.
Everything but the denoiser is held fixed across fractions: same labels, same initial noise, same
sampler, same reference features, so FID differences come from the swapped steps alone. The
sampling seed is the run's own (10_000 + seed), so fraction 0 reproduces the run's samples.
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Callable

import torch

from bench import provenance
from bench.analysis import result_header
from bench.backbone import load_backbone
from bench.data import load_split
from bench.errors import BenchError
from bench.features import get_extractor
from bench.features.cache import cached_features, images_sha256
from bench.metrics import fid_from_features
from bench.paths import results_dir
from bench.planning import PlannedRun
from bench.results import method_folder, write_json_atomic
from bench.runner import load_finetuned
from bench.sampling import balanced_labels, sample
from bench.spec import canonical_hash
from bench.tasks import Task

NAME = "chain-of-forgetting"
DEFAULT_FRACTIONS = [round(i / 10, 1) for i in range(11)]


def steps_replaced(fraction: float, n: int) -> int:
    """How many of n reverse steps the pre-trained model runs (half rounds up, unlike round())."""
    return int(math.floor(fraction * n + 0.5))


def denoiser_schedule(fraction: float, pretrained: torch.nn.Module,
                      finetuned: torch.nn.Module) -> Callable[[int, int], torch.nn.Module]:
    """denoiser_at(i, n) for bench.sampling.sample: step i = 0 is the noise end, so the data end is
    the last `steps_replaced` steps."""

    def at(i: int, n: int) -> torch.nn.Module:
        return pretrained if i >= n - steps_replaced(fraction, n) else finetuned

    return at


def check_fractions(fractions: list[float]) -> list[float]:
    if not fractions:
        raise BenchError("--fractions needs at least one value")
    bad = [f for f in fractions if not (0.0 <= f <= 1.0) or not math.isfinite(f)]
    if bad:
        raise BenchError(f"--fractions must lie in [0, 1], got {bad}")
    return sorted(set(float(f) for f in fractions))


def analysis_path(run: PlannedRun, config_hash: str) -> Path:
    """The analysis of `run`, keyed by `analysis_config_hash`."""
    task = run.task
    return (results_dir() / task.key / task.profile / "analysis" / NAME / method_folder(run.method) / config_hash / run.dataset
            / f"seed{run.seed}.json")


def analysis_config_hash(task: Task, run_config_hash: str, fractions: list[float], num_samples: int) -> str:
    return canonical_hash({"analysis": NAME, "run": run_config_hash, "fractions": fractions,
                           "num_samples": num_samples, "sampling": task.spec.sampling.model_dump(mode="json")})


def run(planned: PlannedRun, *, fractions: list[float] = DEFAULT_FRACTIONS, num_samples: int | None = None,
        force: bool = False, log=print) -> Path:
    """The chain of forgetting of one finished run, as `bench run` planned it (bench/runner.py plan)."""
    task, dataset, seed = planned.task, planned.dataset, planned.seed
    spec = task.spec
    fractions = check_fractions(fractions)
    n = num_samples or spec.sampling.num_samples
    if n <= 0:
        raise BenchError(f"--num-samples must be positive, got {n}")
    cfg = analysis_config_hash(task, planned.config_hash, fractions, n)
    path = analysis_path(planned, cfg)
    if path.exists() and not force:
        log(f"skip   {path} (complete; --force to redo)")
        return path
    t0 = time.time()
    finetuned, run_path = load_finetuned(planned, planned.build_method())
    pretrained = load_backbone(spec.backbone)
    pretrained.model.eval()
    ds = spec.datasets[dataset]
    ref_set = load_split(ds, "train" if spec.evaluation.reference == "train" else "eval", spec.image_size)
    extractor = get_extractor(spec.evaluation.extractor)
    ref_feats, _ = cached_features(extractor, ref_set.images, desc="features (reference)")
    labels = balanced_labels(n, ds.num_classes)
    points = []
    for f in fractions:
        images = sample(finetuned, labels, diffusion=spec.diffusion, scheduler=spec.sampling.scheduler,
                        steps=spec.sampling.steps, guidance_scale=spec.sampling.guidance_scale,
                        batch_size=spec.sampling.batch_size, seed=10_000 + seed,
                        denoiser_at=denoiser_schedule(f, pretrained.model, finetuned.model),
                        desc=f"sampling ({f:.0%} pre-trained)", clip_denoised=spec.sampling.clip_denoised)
        gen, _ = cached_features(extractor, images, desc="features (generated)")
        fid = fid_from_features(gen.features, ref_feats.features)
        points.append({"fraction": f, "steps_replaced": steps_replaced(f, spec.sampling.steps), "fid": fid,
                       "samples_sha256": images_sha256(images)})
        log(f"       {task.key} [{task.profile}] {planned.method} {dataset} seed{seed}: "
            f"{f:.0%} of steps pre-trained -> FID {fid:.4g}")
    import json

    run_result = json.loads(run_path.read_text())
    result = {
        **result_header(NAME, task, dataset, planned.method),
        "method_config": planned.method_config,
        "config_hash": cfg,
        "run_config_hash": planned.config_hash,
        "seed": seed,
        "fractions": fractions,
        "num_samples": n,
        "sampling_steps": spec.sampling.steps,
        "sampling_seed": 10_000 + seed,
        "direction": "pre-trained denoiser on the last round(fraction * steps) reverse steps (data end)",
        "points": points,
        "run": {"result": str(run_path.relative_to(results_dir())),
                "result_sha256": hashlib.sha256(run_path.read_bytes()).hexdigest(),
                "fid": run_result.get("metrics", {}).get("fid"), "num_samples": run_result.get("samples", {}).get("n")},
        "reference": {"split": spec.evaluation.reference, "n": len(ref_set), "sha256": ref_set.sha256()},
        "provenance": {
            **provenance.git_state(),
            "packages": provenance.package_versions(),
            "device": provenance.device_info(),
            "backbone_sha256": pretrained.weights_sha256,
            "extractor": extractor.preprocessing(),
            "wall_time_s": round(time.time() - t0, 3),
            "peak_memory_mb": round(provenance.peak_memory_mb(), 1),
        },
        "resolved_spec": planned.resolved_spec,
    }
    write_json_atomic(path, result)
    log(f"wrote  {path}")
    return path
