"""One run = one (task, profile, method, dataset, seed, sweep point): plan, train through the
shared trainer, let the task's family sample and score, record.

This module knows no kind of experiment: everything family-specific (data, batches, extra
training data, sampling, metrics, tracked metrics) lives in bench/families/, and everything
architecture-specific in bench/backbone/. What every run shares stays here: planning and
validation before any work, the result key and run identity, skip-complete and stale detection,
resume, provenance and the atomic write.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench import provenance
from bench.backbone import adapter_class, load_backbone, noise_schedule, state_sha256
from bench.distributed import data_parallel
from bench.errors import BenchError, unknown
from bench.families import family_class
from bench.method import Method, TrainContext
from bench.paths import checkpoint_dir  # noqa: F401  (importable from here, as before)
from bench.registry import build_method
from bench.results import (SCHEMA_VERSION, result_path, run_config_hash, run_identity, stored_identity,
                           write_json_atomic)
from bench.tasks import Task
from bench.tracking import Tracker
from bench.trainer import train


@dataclass
class RunRequest:
    task: Task  # with this run's task overrides applied
    method_name: str
    overrides: dict[str, str]  # method config overrides
    dataset: str
    seed: int
    steps: int | None = None
    force: bool = False
    resume: bool = False
    device: str = "auto"
    sweep: dict[str, Any] = field(default_factory=dict)  # the swept values of this run (its path label)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return torch.device(name)


# -- sweeps -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SweepPoint:
    method_overrides: dict[str, str]
    task_overrides: dict[str, Any]
    values: dict[str, Any]  # key -> value, as shown in the path


def _task_path(task: Task, key: str) -> str:
    """A sweep key that is not a method field: a dotted task path, or a bare field of the family's
    `params` section (`eta` for `params.eta`)."""
    from bench.spec import ProfileSpec

    head = key.split(".")[0]
    if head not in ProfileSpec.model_fields and key in family_class(task.file.family).Params.model_fields:
        return f"params.{key}"
    return key


def _is_method_key(key: str, method_name: str) -> str | None:
    """The method config key a sweep key addresses, or None for a task path."""
    from bench.registry import method_class

    if key.startswith("method."):
        return key[len("method."):]
    parts = method_name.split("+")
    head, _, rest = key.partition(".")
    if len(parts) > 1 and head in parts and rest:
        return key
    if len(parts) == 1 and key in method_class(parts[0]).Config.model_fields:
        return key
    return None


def expand_sweep(task: Task, method_name: str, sweep: dict[str, list] | None,
                 task_sets: dict[str, Any] | None = None) -> list[SweepPoint]:
    """The grid of a sweep (CLI `--sweep`, else the task's own `sweep` section) as run points. A key
    is a method config field (`tau`, `method.tau`, `lora.rank` in a composition) or a dotted task
    path (`train.class_dropout`, `params.eta`), or a bare field of the family's params (`eta`)."""
    if not sweep and task.spec.sweep is not None:
        sweep = {task.spec.sweep.parameter: list(task.spec.sweep.values)}
    points = []
    # A task key is recorded under its full path (`params.eta`), as the override it becomes.
    keys = [k if _is_method_key(k, method_name) is not None else _task_path(task, k) for k in (sweep or {})]
    for combo in itertools.product(*(sweep or {}).values()):
        m, t = {}, dict(task_sets or {})
        for key, value in zip(keys, combo):
            mk = _is_method_key(key, method_name)
            if mk is not None:
                m[mk] = value if isinstance(value, str) else json.dumps(value)
            else:
                t[key] = value
        points.append(SweepPoint(m, t, dict(zip(keys, combo))))
    return points


@dataclass(frozen=True)
class PlannedPoint:
    method: Method
    task: Task
    overrides: dict[str, str]  # method config overrides, sweep values included
    sweep: dict[str, Any]

    def requests(self, method_name: str, datasets: list[str], seeds: list[int], **kw) -> list[RunRequest]:
        return [RunRequest(self.task, method_name, self.overrides, d, s, sweep=self.sweep, **kw)
                for d in datasets for s in seeds]


def plan(task: Task, method_name: str, overrides: dict[str, str], datasets: list[str] | None,
         seeds: list[int] | None, steps: int | None, sweep: dict[str, list] | None = None,
         task_sets: dict[str, Any] | None = None) -> tuple[list[PlannedPoint], list[str], list[int]]:
    """Validate everything a run needs before any work starts (bad input fails fast, writes
    nothing). Returns (one planned point per sweep value, datasets, seeds)."""
    # The cheap checks first: check_run imports the backbone adapter (and diffusers, seconds).
    names = datasets or list(task.spec.datasets)
    for name in names:
        if name not in task.spec.datasets:
            raise unknown(f"dataset for task {task.name} ({task.profile} profile)", name, task.spec.datasets)
    if steps is not None and steps <= 0:
        raise BenchError(f"--steps must be positive, got {steps}")
    points = []
    for point in expand_sweep(task, method_name, sweep, task_sets):
        t = task.with_overrides(point.task_overrides)
        t = family_class(t.file.family).resolve(t, method_name)
        merged = {**overrides, **point.method_overrides}
        method = build_method(method_name, merged, family=t.family)
        check_run(t, method)
        points.append(PlannedPoint(method, t, merged, point.values))
    return points, names, list(seeds if seeds is not None else task.spec.seeds)


def check_run(task: Task, method: Method) -> None:
    """Plan-time checks that join a task and a method: weights, family, backbone groups, extra data."""
    adapter = adapter_class(task.spec.backbone.kind)
    family = family_class(task.file.family)
    if family.checks_inputs_together:  # it runs the preflight itself, naming every missing input in one line
        family.check(task)
        adapter.preflight(task.spec.backbone)
    else:
        adapter.preflight(task.spec.backbone)
        family.check(task)
    missing = [g for g in method.groups if g not in adapter.groups]
    if missing:
        raise BenchError(f"method {method.full_name!r} targets module group(s) {missing} that backbone kind "
                         f"{adapter.kind!r} does not have (it has: {', '.join(adapter.groups)})")
    lacking = [d for d in method.needs_data if d not in family.provides]
    if lacking:
        raise BenchError(f"method {method.full_name!r} needs extra training data {lacking} that family "
                         f"{family.name!r} does not provide (it provides: {', '.join(family.provides) or 'none'})")


# -- keys ---------------------------------------------------------------------------------------

def budget(task: Task, steps: int | None) -> dict:
    # Unset optional fields are left out, so adding one (e.g. `loss`) keeps earlier results' keys.
    train_spec = task.spec.train.model_dump(exclude_none=True)
    if steps is not None:
        train_spec["steps"] = steps
    return train_spec


def run_key(task: Task, method: Method, steps: int | None, dataset: str, seed: int,
            sweep: dict | None = None) -> tuple[Path, str]:
    cfg_hash = run_config_hash(method.full_name, method.config_dict(), budget(task, steps), dict(task.overrides))
    label = {**dict(task.overrides), **(sweep or {})}  # overrides and swept values are readable in the path
    return result_path(task.key, task.profile, method.full_name, cfg_hash, dataset, seed, sweep=label), cfg_hash


def identity(task: Task, method: Method, steps: int | None, dataset: str, data: dict[str, str]) -> str:
    return run_identity(task.resolved(), dict(task.overrides), dataset, method.full_name, method.config_dict(),
                        budget(task, steps), data)


def is_current(path: Path, current: str) -> bool:
    try:
        return stored_identity(json.loads(path.read_text())) == current
    except (OSError, ValueError, KeyError, TypeError):
        return False  # unreadable or from an older schema: redo it


# -- one run ------------------------------------------------------------------------------------

def execute(req: RunRequest, method: Method, log=print) -> Path:
    task, spec = req.task, req.task.spec
    path, cfg_hash = run_key(task, method, req.steps, req.dataset, req.seed, req.sweep)
    family = family_class(task.file.family)(task, req.dataset)
    data = family.load_data()
    run_id = identity(task, method, req.steps, req.dataset, data)
    if path.exists() and not req.force:
        if is_current(path, run_id):
            log(f"skip   {path} (complete; --force to redo)")
            return path
        log(f"stale  {path} (its run spec no longer matches the task file); redoing it")
    t0 = time.time()
    # The code that trains is the code at the start: the tree may move on while a run is in flight.
    git = provenance.git_state()
    timings = {}
    torch.manual_seed(req.seed)
    device = resolve_device(req.device)
    # Deterministic kernels everywhere they exist (on CPU every op used here already is; on GPU
    # ops without one warn). Thread count needs no pin: 1 and 2 threads give the same bits here.
    torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
    backbone = load_backbone(spec.backbone).to(device)
    family.bind(backbone)
    family.start(req.seed)
    schedule = noise_schedule(spec.diffusion)
    train_spec = family.train_spec(method)
    ctx = TrainContext(backbone=backbone, dataset=family.dataset, num_timesteps=spec.diffusion.num_train_timesteps,
                       batch_size=train_spec.batch_size, extra_data=family.extra)
    steps = req.steps or train_spec.steps
    tracker = None
    tracking = family.tracking_spec(steps)
    if tracking is not None:
        tracker = Tracker(tracking, family.tracked_metrics(), lambda: family.track(req.seed),
                          family.track_samples(), rules=family.tracking_rules())
    backbone_params = sum(p.numel() for p in backbone.model.parameters())  # before any injected module
    parallel = data_parallel(device)  # under `accelerate launch` with several processes
    tt = time.time()
    outcome = train(method, ctx, lambda: family.draw_batch(train_spec), train_spec, schedule, seed=req.seed,
                    steps=steps, ckpt_dir=checkpoint_dir(path), resume=req.resume, tracker=tracker, parallel=parallel)
    if parallel is not None and not parallel.is_main:
        return path  # the main process samples, scores and writes the result
    timings["train_s"] = time.time() - tt
    if tracker is not None:
        timings["tracking_s"] = tracker.seconds
        timings["train_s"] -= tracker.seconds

    te = time.time()
    evaluation = family.evaluate(method, req.seed)
    timings["evaluate_s"] = time.time() - te
    evaluation.setdefault("reference", {})["sha256"] = data["reference"]  # part of the run identity
    metrics = evaluation.pop("metrics")
    extractors = evaluation.pop("extractors", None)

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
        "sweep": req.sweep,
        "task_overrides": dict(task.overrides),
        "run_identity": run_id,
        "seed": req.seed,
        "budget": budget(task, req.steps),  # the task's (run identity); a family's own budget is under training
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
            "learning_rate": method.learning_rate(train_spec.lr),
        },
        **evaluation,  # the family's record of what it sampled and compared against
        "provenance": {
            **git,
            "packages": provenance.package_versions(),
            # What the run computed on (device_info says what the machine has): verify re-runs there.
            "device": {**provenance.device_info(), "run_device": device.type},
            "backbone_sha256": backbone.weights_sha256,
            "train_data_sha256": data["train"],
            "extractors": extractors,
            **family.provenance(),
            "final_state_sha256": state_sha256(final_state),
            "wall_time_s": round(time.time() - t0, 3),
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
            "peak_memory_mb": round(provenance.peak_memory_mb(), 1),
            **({"data_parallel": parallel.info()} if parallel is not None else {}),
        },
        "resolved_spec": task.resolved(),
    }
    if tracker is not None:
        result["tracking"] = tracker.result()
    write_json_atomic(path, result)
    log(f"wrote  {path}  " + "  ".join(f"{k}={_fmt(v)}" for k, v in metrics.items()))
    return path


def _fmt(v) -> str:
    if isinstance(v, dict):
        if "mean" in v:
            return f"{v['mean']:.5g}"
        if "total" in v:
            return f"{v['total']:.5g}"
        return "/".join(f"{x:.3g}" for x in v.values() if isinstance(x, float))
    return f"{v:.5g}" if isinstance(v, float) else str(v)


def load_finetuned(task: Task, method: Method, dataset: str, seed: int, steps: int | None = None):
    """The fine-tuned backbone of a finished run (for analyses such as the chain of forgetting).
    Returns (backbone, result_file)."""
    from bench.checkpoints import latest_checkpoint, load_checkpoint_state
    from bench.trainer import step_seed

    path, _ = run_key(task, method, steps, dataset, seed)
    if not path.exists():
        raise BenchError(f"no finished run at {path}; run `bench run --task {task.name} --method "
                         f"{method.full_name} --profile {task.profile} --dataset {dataset} --seeds {seed}` first")
    ckpt = latest_checkpoint(checkpoint_dir(path))
    if ckpt is None:
        raise BenchError(f"the checkpoints of {path} are not in this cache ({checkpoint_dir(path)}); "
                         f"rerun with --force to recreate them")
    backbone = load_backbone(task.spec.backbone)
    ctx = TrainContext(backbone=backbone, dataset=task.spec.datasets[dataset],
                       num_timesteps=task.spec.diffusion.num_train_timesteps, batch_size=task.spec.train.batch_size)
    torch.manual_seed(step_seed(seed, -1))  # same injected-module init as in training
    backbone.model = method.prepare(backbone.model, ctx)
    method.load_state_dict(backbone.model, load_checkpoint_state(ckpt))
    backbone.model.eval()
    return backbone, path
