"""A backbone taken from a finished run of the suite (`bench run --backbone-from RESULT`): e.g. each
corruption-sweep pre-training run's final model, fine-tuned downstream on the dit-transfer stand-ins.

The task's `backbone.from_run` names the source run's result file (relative to the results folder)
and pins the content it must have: the sha256 of the source's final state (`final_state_sha256`,
the EMA where the run kept one, which is what it sampled). It replaces the task's own weights; the
architecture stays the task's and must equal the source run's. The source's weights come from its
last checkpoint in this machine's cache; a missing result or checkpoint, another architecture, a
partial state (a run that did not train every parameter) or a changed state are one-line errors.
An adapter with a `base_kind` (a ControlNet beside a DiT) takes a run of that kind: its weights fill
the base model and the adapter's own modules are made from them (`Backbone.extend`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from bench.errors import BenchError
from bench.hashing import state_sha256
from bench.spec import BackboneSpec


def source_file(spec: BackboneSpec) -> Path:
    from bench.paths import results_dir

    path = Path(spec.from_run.result)
    return path if path.is_absolute() else results_dir() / path


def check_source(spec: BackboneSpec, ours: type, checkpoint: bool = True) -> dict:
    """The source run's result, after checking that it can provide this backbone (`ours`: the task's
    adapter class, handed down by bench/backbone/base.py so that this module imports no adapter
    dispatch, the runner or the trainer; checkpoints are found through bench/paths.py and read
    through bench/checkpoints.py). At plan time the
    checkpoint is not asked for (`checkpoint=False`): a downstream run whose result is complete is
    skipped without it (a fresh clone of committed results has no checkpoints); one that trains
    checks it before it starts (`load_into`)."""
    from bench.checkpoints import latest_checkpoint
    from bench.paths import checkpoint_dir

    path = source_file(spec)
    try:
        source = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BenchError(f"backbone.from_run: cannot read the source run's result {path} ({type(exc).__name__}); "
                         f"run it first") from None
    theirs = source.get("resolved_spec", {}).get("spec", {}).get("backbone", {})
    # A ControlNet adapter starts from a run of its base kind and adds its own modules beside it.
    kind = ours.base_kind or spec.kind
    if theirs.get("kind") != kind or ours.base_config(theirs.get("config") or {}) != ours.base_config(spec.config):
        raise BenchError(f"backbone.from_run: {path} trained a {theirs.get('kind')} backbone with another "
                         f"architecture than this task's {kind}; they must be identical")
    recorded = source.get("provenance", {}).get("final_state_sha256")
    if recorded != spec.from_run.final_state_sha256:
        raise BenchError(f"backbone.from_run: {path} records final state {str(recorded)[:12]}..., the task pins "
                         f"{spec.from_run.final_state_sha256[:12]}... (was the source run redone?)")
    if checkpoint and latest_checkpoint(checkpoint_dir(path)) is None:
        raise BenchError(f"backbone.from_run: the checkpoints of {path} are not in this cache "
                         f"({checkpoint_dir(path)}); rerun the source with --force to recreate them")
    return source


def load_into(model: torch.nn.Module, spec: BackboneSpec, ours: type) -> str:
    """Copy the source run's final weights into `model` (every parameter); returns their sha256."""
    from bench.checkpoints import latest_checkpoint, load_checkpoint_state
    from bench.paths import checkpoint_dir

    check_source(spec, ours)
    state = load_checkpoint_state(latest_checkpoint(checkpoint_dir(source_file(spec))))
    digest = state_sha256(state)
    if digest != spec.from_run.final_state_sha256:
        raise BenchError(f"backbone.from_run: the checkpoint of {spec.from_run.result} holds state {digest[:12]}..., "
                         f"not the pinned {spec.from_run.final_state_sha256[:12]}...")
    params = dict(model.named_parameters())
    missing = sorted(set(params) - set(state))
    if missing:
        raise BenchError(f"backbone.from_run: {spec.from_run.result} did not train every parameter (e.g. "
                         f"{missing[0]}); only a run that trains the whole model can serve as a backbone")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state[name])
    return digest


def pin(result: str) -> dict:
    """The `backbone.from_run` value for a result file: its path and its recorded final state."""
    from bench.paths import results_dir

    path = Path(result)
    full = path if path.is_absolute() else (Path.cwd() / path if path.exists() else results_dir() / path)
    try:
        source = json.loads(full.read_text())
    except (OSError, ValueError) as exc:
        raise BenchError(f"--backbone-from {result}: cannot read it ({type(exc).__name__})") from None
    try:
        rel = str(full.resolve().relative_to(results_dir().resolve()))
    except ValueError:
        rel = str(full.resolve())
    sha = source.get("provenance", {}).get("final_state_sha256")
    if not sha:
        raise BenchError(f"--backbone-from {result}: not a run result (no provenance.final_state_sha256)")
    return {"result": rel, "final_state_sha256": sha}
