"""One run = one (task, profile, method, dataset, seed, sweep point): plan, train through the
shared trainer, let the task's family sample and score, record.

This module knows no kind of experiment: everything family-specific (data, batches, extra
training data, sampling, metrics, tracked metrics) lives in bench/families/, and everything
architecture-specific in bench/backbone/. What every run shares stays here: planning and
validation before any work, skip-complete and stale detection, resume, provenance and the atomic
write. What names a run (its config hash, result file and run identity) is resolved once, when it
is planned, into a `PlannedRun` (bench/planning.py); everything here reads that record.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench import provenance
from bench.backbone import adapter_class, load_backbone, noise_schedule, state_sha256
from bench.distributed import data_parallel, process_device, use_device
from bench.errors import BenchError, unknown
from bench.families import family_class
from bench.method import Method, TrainContext
from bench.paths import checkpoint_dir  # noqa: F401  (importable from here, as before)
from bench.planning import PlannedRun, plan_run
from bench.registry import build_method
from bench.results import SCHEMA_VERSION, write_json_atomic
from bench.tasks import Task
from bench.tracking import Tracker
from bench.trainer import train


@dataclass(frozen=True)
class RunOptions:
    """How to carry out a planned run; none of it is part of what the run is (its key or identity)."""

    force: bool = False   # redo it even when its result is current
    resume: bool = False  # continue from its last checkpoint
    device: str = "auto"


def resolve_device(name: str) -> torch.device:
    """The device `--device name` means for this process: under a launch of several processes, CUDA
    is this process's own GPU, cuda:LOCAL_RANK (bench.distributed.process_device)."""
    if name == "auto":
        return process_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return process_device(torch.device(name))


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
    runs: tuple[PlannedRun, ...]  # one per (dataset, seed)


def plan(task: Task, method_name: str, overrides: dict[str, str], datasets: list[str] | None,
         seeds: list[int] | None, steps: int | None, sweep: dict[str, list] | None = None,
         task_sets: dict[str, Any] | None = None) -> tuple[list[PlannedPoint], list[str], list[int]]:
    """Validate everything a run needs before any work starts (bad input fails fast, writes
    nothing), and resolve each run once. Returns (one planned point per sweep value, each with its
    runs, datasets, seeds)."""
    # The cheap checks first: check_run imports the backbone adapter (and diffusers, seconds).
    names = datasets or list(task.spec.datasets)
    for name in names:
        if name not in task.spec.datasets:
            raise unknown(f"dataset for task {task.name} ({task.profile} profile)", name, task.spec.datasets)
    if steps is not None and steps <= 0:
        raise BenchError(f"--steps must be positive, got {steps}")
    seeds = list(seeds if seeds is not None else task.spec.seeds)
    points = []
    for point in expand_sweep(task, method_name, sweep, task_sets):
        t = task.with_overrides(point.task_overrides)
        t = family_class(t.file.family).resolve(t, method_name)
        t, run_steps = smoke(t, steps)
        merged = {**overrides, **point.method_overrides}
        method = build_method(method_name, merged, family=t.family)
        check_run(t, method, run_steps)
        runs = tuple(plan_run(t, method, d, s, steps=run_steps, sweep=point.values, method_name=method_name,
                              method_overrides=merged) for d in names for s in seeds)
        points.append(PlannedPoint(method, t, merged, point.values, runs))
    return points, names, seeds


def smoke(task: Task, steps: int | None) -> tuple[Task, int | None]:
    """A smoke run (`bench run --smoke`, i.e. task setting `smoke: true`): the family's shrunken
    evaluation (`Family.smoke_overrides`) applied as task overrides, and its few training steps
    unless --steps says otherwise. Both are recorded like any override, so the run is keyed apart
    (`smoke=True` in its folder) and `replan` of its result plans the same run again (the shrunken
    values are then already overrides, which win over a second application)."""
    if not task.spec.smoke:
        return task, steps
    family = family_class(task.file.family)
    mine = dict(task.overrides)
    shrunk = {k: v for k, v in family.smoke_overrides(task).items() if k not in mine}
    if steps is None and task.spec.train.steps > 0:  # a zero budget (published weights) stays zero
        steps = family.smoke_steps
    return task.with_overrides(shrunk), steps


def check_run(task: Task, method: Method, steps: int | None = None) -> None:
    """Plan-time checks that join a task and a method: weights, family, backbone groups, extra data,
    and the method's own (`Method.check`) on the run's budget (`steps`: --steps, None = the task's)."""
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
    method.check_backbone(task.spec.backbone)  # e.g. a peft tuner and the layer types of its groups
    lacking = [d for d in method.needs_data if d not in family.provides]
    if lacking:
        raise BenchError(f"method {method.full_name!r} needs extra training data {lacking} that family "
                         f"{family.name!r} does not provide (it provides: {', '.join(family.provides) or 'none'})")
    method.check(task, steps)


# -- one run ------------------------------------------------------------------------------------

def execute(run: PlannedRun, method: Method, log=print, options: RunOptions = RunOptions()) -> Path:
    """Train, sample, score and record one planned run, or skip it when its result is current.
    `method` is a fresh instance of the planned method (`run.build_method()`): training changes it."""
    run.check_method(method)
    task, spec, path = run.task, run.task.spec, run.path
    family = family_class(task.file.family)(task, run.dataset)
    run = run.with_data(family.load_data())
    if path.exists() and not options.force:
        why = run.not_current()
        if why is None:
            log(f"skip   {path} (complete; --force to redo)")
            return path
        if why == "stale":
            log(f"stale  {path} (its run spec no longer matches the task file); redoing it")
        else:
            log(f"redo   {path} ({why}: not a complete result); redoing it")
    t0 = time.time()
    # The code that trains is the code at the start: the tree may move on while a run is in flight.
    git = provenance.git_state()
    timings = {}
    torch.manual_seed(run.seed)
    device = resolve_device(options.device)
    use_device(device)  # before anything moves: each process of a data-parallel run on its own GPU
    # Deterministic kernels everywhere they exist (on CPU every op used here already is; on GPU
    # ops without one warn). Thread count needs no pin: 1 and 2 threads give the same bits here.
    torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
    backbone = load_backbone(spec.backbone).to(device)
    family.bind(backbone)
    family.start(run.seed)
    schedule = noise_schedule(spec.diffusion)
    train_spec = family.train_spec(method)
    ctx = TrainContext(backbone=backbone, dataset=family.dataset, num_timesteps=spec.diffusion.num_train_timesteps,
                       batch_size=train_spec.batch_size, extra_data=family.extra)
    steps = run.steps or train_spec.steps
    tracker = None
    tracking = family.tracking_spec(steps)
    if tracking is not None:
        tracker = Tracker(tracking, family.tracked_metrics(), lambda: family.track(run.seed),
                          family.track_samples(), rules=family.tracking_rules())
    backbone_params = sum(p.numel() for p in backbone.model.parameters())  # before any injected module
    parallel = data_parallel(device)  # under `accelerate launch` with several processes
    tt = time.time()
    outcome = train(method, ctx, lambda: family.draw_batch(train_spec), train_spec, schedule, seed=run.seed,
                    steps=steps, ckpt_dir=run.checkpoint_dir, resume=options.resume, tracker=tracker,
                    parallel=parallel)
    if parallel is not None and not parallel.is_main:
        return path  # the main process samples, scores and writes the result
    timings["train_s"] = time.time() - tt
    if tracker is not None:
        timings["tracking_s"] = tracker.seconds
        timings["train_s"] -= tracker.seconds

    te = time.time()
    evaluation = family.evaluate(method, run.seed)
    timings["evaluate_s"] = time.time() - te
    evaluation.setdefault("reference", {})["sha256"] = run.data["reference"]  # part of the run identity
    metrics = evaluation.pop("metrics")
    extractors = evaluation.pop("extractors", None)

    final_state = method.state_dict(backbone.model)
    result = {
        "schema": SCHEMA_VERSION,
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
            **({"method_diagnostics": outcome.diagnostics} if outcome.diagnostics is not None else {}),
        },
        **evaluation,  # the family's record of what it sampled and compared against
        "provenance": {
            **git,
            "packages": provenance.package_versions(),
            # What the run computed on (device_info says what the machine has): verify re-runs there.
            "device": {**provenance.device_info(), "run_device": device.type},
            "backbone_sha256": backbone.weights_sha256,
            "train_data_sha256": run.data["train"],
            "extractors": extractors,
            **family.provenance(),
            "final_state_sha256": state_sha256(final_state),
            "wall_time_s": round(time.time() - t0, 3),
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
            "peak_memory_mb": round(provenance.peak_memory_mb(), 1),
            **({"data_parallel": parallel.info()} if parallel is not None else {}),
        },
        # What the run is, as planned: task, method and config, dataset, seed, the task's budget (a
        # family's own is under training), config hash, run identity, resolved spec. Last, so that
        # nothing a family records can overwrite it.
        **run.record(),
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


def load_finetuned(run: PlannedRun, method: Method):
    """The fine-tuned backbone of a finished run (for analyses such as the chain of forgetting),
    with `method` (a fresh instance of the planned one) prepared and loaded with the run's final
    state. Returns (backbone, result_file)."""
    from bench.checkpoints import latest_checkpoint, load_checkpoint_state
    from bench.trainer import step_seed

    run.check_method(method)
    task, path = run.task, run.path
    if not path.exists():
        raise BenchError(f"no finished run at {path}; run `bench run --task {task.name} --method "
                         f"{run.method} --profile {task.profile} --dataset {run.dataset} --seeds {run.seed}` first")
    ckpt = latest_checkpoint(run.checkpoint_dir)
    if ckpt is None:
        raise BenchError(f"the checkpoints of {path} are not in this cache ({run.checkpoint_dir}); "
                         f"rerun with --force to recreate them")
    backbone = load_backbone(task.spec.backbone)
    ctx = TrainContext(backbone=backbone, dataset=task.spec.datasets[run.dataset],
                       num_timesteps=task.spec.diffusion.num_train_timesteps, batch_size=task.spec.train.batch_size)
    torch.manual_seed(step_seed(run.seed, -1))  # same injected-module init as in training
    backbone.model = method.prepare(backbone.model, ctx)
    method.load_state_dict(backbone.model, load_checkpoint_state(ckpt))
    backbone.model.eval()
    return backbone, path


def rebuild_checkpoint(run: PlannedRun, method: Method, log=print) -> dict:
    """Re-train a finished run whose checkpoints are not in this cache (a fresh clone of committed
    results has none), into its checkpoint folder, without sampling or scoring, and check that the
    final state against the sha256 the result records. Returns {"recorded", "rebuilt", "matches"}: an
    analysis records it, so a model re-trained under other code or on another machine (a different
    state) is never passed off as the one the run evaluated. The result file is never touched."""
    run.check_method(method)
    task, spec, path = run.task, run.task.spec, run.path
    if not path.exists():
        raise BenchError(f"no finished run at {path}; run it first")
    recorded = json.loads(path.read_text()).get("provenance", {}).get("final_state_sha256")
    if not recorded:
        raise BenchError(f"{path} records no provenance.final_state_sha256; cannot check a re-trained model")
    family = family_class(task.file.family)(task, run.dataset)
    run = run.with_data(family.load_data())
    torch.manual_seed(run.seed)
    torch.use_deterministic_algorithms(True)
    backbone = load_backbone(spec.backbone)
    family.bind(backbone)
    family.start(run.seed)
    train_spec = family.train_spec(method)
    ctx = TrainContext(backbone=backbone, dataset=family.dataset, num_timesteps=spec.diffusion.num_train_timesteps,
                       batch_size=train_spec.batch_size, extra_data=family.extra)
    tracking = family.tracking_spec(run.steps or train_spec.steps)
    tracker = None
    if tracking is not None:  # tracking may draw from the training seed stream: keep it as the run did
        tracker = Tracker(tracking, family.tracked_metrics(), lambda: family.track(run.seed),
                          family.track_samples(), rules=family.tracking_rules())
    log(f"retrain {path} (checkpoints not in this cache; training only, checked against its final state)")
    train(method, ctx, lambda: family.draw_batch(train_spec), train_spec, noise_schedule(spec.diffusion),
          seed=run.seed, steps=run.steps or train_spec.steps, ckpt_dir=run.checkpoint_dir, tracker=tracker)
    got = state_sha256(method.state_dict(backbone.model))  # as execute() records it
    if got != recorded:
        log(f"warning re-training {path} gave final state {got[:12]}..., the result records {recorded[:12]}... "
            f"(other code or machine); the analysis records both")
    return {"recorded": recorded, "rebuilt": got, "matches": got == recorded}
