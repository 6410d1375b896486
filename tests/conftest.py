"""Shared fixtures. Every test gets its own results and cache folders, so nothing a test does
reaches the repository's results/ or the user's cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
# `pytest -n 2` runs two workers on the two cores: one thread per worker (and per `bench` subprocess,
# through OMP_NUM_THREADS below) keeps OpenMP's spinning threads from oversubscribing them.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return tmp_path


def bench_cli(*args, env_extra: dict | None = None, timeout: int = 600, check_rc: int | None = None):
    """Run the real `bench` CLI in a subprocess (with this test's env)."""
    env = {**os.environ, **(env_extra or {})}
    proc = subprocess.run([sys.executable, "-m", "bench", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)
    if check_rc is not None:
        assert proc.returncode == check_rc, f"rc={proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}"
    return proc


def without_profiles_preconditions(raw: dict) -> dict:
    """A derived task file that dropped profiles also drops the preconditions declared only for them
    (a precondition naming a profile the file lacks is an error, bench/spec.py)."""
    kept = [p for p in raw.get("preconditions") or []
            if p.get("profiles") is None or set(p["profiles"]) <= set(raw["profiles"])]
    if kept:
        raw["preconditions"] = kept
    else:
        raw.pop("preconditions", None)
    return raw


def small_task_file(tmp_path: Path, task: str = "dit-transfer", **tiny_overrides) -> Path:
    """A copy of a task whose tiny profile is shrunk further, so an end-to-end run takes
    seconds. Same code path; only budget and sample counts change."""
    raw = yaml.safe_load((ROOT / "tasks" / f"{task}.yaml").read_text())
    tiny = raw["profiles"]["tiny"]
    tiny["train"] = {**tiny["train"], "steps": 6, "checkpoint_every": 2, "batch_size": 8}
    tiny["sampling"] = {**tiny["sampling"], "steps": 4, "num_samples": 40, "batch_size": 20}
    tiny["evaluation"] = {**tiny["evaluation"], "kid_subset_size": 20, "kid_subsets": 5}
    if "ewc" in (tiny["evaluation"].get("metrics") or raw["base"]["evaluation"].get("metrics", [])):
        tiny["evaluation"]["ewc_samples"] = 24
    if "knowledge_bank" in tiny:
        tiny["knowledge_bank"] = {**tiny["knowledge_bank"], "num_images": 16, "steps": 4, "batch_size": 16}
    if "tracking" in tiny:
        tiny["tracking"] = {**tiny["tracking"], "every_steps": 3, "num_samples": 20}
    for ds in tiny["datasets"].values():
        if ds is None:  # a base dataset the profile deletes
            continue
        ds["synthetic"] = {**ds["synthetic"], "num_train": 64, "num_eval": 64}
    for key, value in tiny_overrides.items():
        tiny[key] = value
    path = tmp_path / f"{task}-small.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


class Interrupt(Exception):
    """A simulated crash inside training (see `crash_after`)."""


def crash_after(method, batches: int) -> None:
    """Make `method` raise Interrupt when asked for batch `batches` + 1: a crash right after the
    trainer checkpointed step `batches` (the resume tests restart from there)."""
    original, calls = method.make_batch, {"n": 0}

    def crashing(batch, ctx):
        calls["n"] += 1
        if calls["n"] > batches:
            raise Interrupt
        return original(batch, ctx)

    method.make_batch = crashing


def result_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.json")) if root.exists() else []


def pretraining_source(tmp_path: Path) -> tuple[Path, Path, str]:
    """A finished corruption-sweep run (clean, eta 5%, seed 0) at test size, for the downstream
    tasks that start from it: (its task file, its result file, its recorded final state)."""
    import json

    pre = small_task_file(tmp_path, "corruption-sweep", datasets={"imagenet1k": None, "source64": {
        "title": "source", "num_classes": 64, "synthetic": {"generator": "source-shapes", "num_train": 128,
                                                             "num_eval": 320, "seed": 1}}},
                          tracking=None, params={"guidance_scales": [1.0], "memorization_threshold": None,
                                                 "memorization_extractor": None})
    bench_cli("run", "--task", pre, "--method", "clean", "--profile", "tiny", "--sweep", "eta=5", "--seeds", "0",
              check_rc=0)
    (source,) = result_files(tmp_path / "results")
    return pre, source, json.loads(source.read_text())["provenance"]["final_state_sha256"]
