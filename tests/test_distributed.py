"""One run trained data-parallel over two processes (`accelerate launch`, gloo on CPU) against the
same run in one process with the same global batch (bench/distributed.py): the final weights agree
to the declared tolerance (the two differ only in the order of floating-point sums), the logged
losses too, and only the main process writes the result."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys

import torch

from bench.runner import checkpoint_dir
from bench.trainer import latest_checkpoint, load_checkpoint_state
from conftest import ROOT, bench_cli, result_files, small_task_file

# The two runs' final weights may differ by this fraction of how far training moved them (L2 over all
# parameters). Gradients differ only in summation order, but Adam divides by their running RMS, so
# a parameter whose gradient is ~0 can step by up to lr either way: the bound is relative.
TOLERANCE = 0.01  # measured: 5.6e-4 after 6 steps


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _final_state(result, cache, monkeypatch) -> dict[str, torch.Tensor]:
    monkeypatch.setenv("BENCH_CACHE", str(cache))
    return load_checkpoint_state(latest_checkpoint(checkpoint_dir(result)))


def _initial(result) -> dict[str, torch.Tensor]:
    """The weights training started from: the task's tiny pre-trained DiT."""
    from bench.backbone import load_backbone
    from bench.tasks import load_task

    return {k: v.detach() for k, v in load_backbone(load_task("dit-transfer", "tiny").spec.backbone).model
            .named_parameters()}


def test_a_two_process_run_matches_a_one_process_run(tmp_path, monkeypatch):
    # `--multi_gpu` is accelerate's torchrun launcher; with `--device cpu` the processes use gloo.
    # (accelerate's `--cpu` runs a single process whatever --num_processes says.)
    task = small_task_file(tmp_path, "dit-transfer")  # global batch 8, 6 steps
    args = ["run", "--task", task, "--method", "full-ft", "--profile", "tiny", "--dataset", "food101",
            "--seeds", "0", "--device", "cpu"]
    one, two = tmp_path / "one", tmp_path / "two"
    bench_cli(*args, env_extra={"BENCH_RESULTS": str(one / "results"), "BENCH_CACHE": str(one / "cache")},
              check_rc=0)
    env = {**os.environ, "BENCH_RESULTS": str(two / "results"), "BENCH_CACHE": str(two / "cache")}
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           "--main_process_port", str(_free_port()), "-m", "bench", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("wrote  ") == 1  # the main process alone writes
    (r1,), (r2,) = result_files(one / "results"), result_files(two / "results")
    assert r1.relative_to(one / "results") == r2.relative_to(two / "results")  # the same run, same key
    a, b = json.loads(r1.read_text()), json.loads(r2.read_text())
    assert b["provenance"]["data_parallel"] == {"processes": 2, "backend": "gloo"}
    assert "data_parallel" not in a["provenance"]
    assert a["run_identity"] == b["run_identity"]
    for (s1, l1), (s2, l2) in zip(a["training"]["loss_curve"], b["training"]["loss_curve"]):
        assert s1 == s2 and abs(l1 - l2) <= 1e-5 * max(1.0, abs(l1))
    w1, w2 = _final_state(r1, one / "cache", monkeypatch), _final_state(r2, two / "cache", monkeypatch)
    assert w1.keys() == w2.keys()
    # BENCH_CACHE is two's now: the two-process run's first checkpoint (checkpoint folders are keyed by
    # the result's absolute path, so r1's are in one's cache only).
    w0 = load_checkpoint_state(sorted(checkpoint_dir(r2).glob("step-*.safetensors"))[0])  # after 2 steps
    start = _initial(r1)
    update = math.sqrt(sum((w1[k] - start[k]).pow(2).sum().item() for k in w1))
    apart = math.sqrt(sum((w1[k] - w2[k]).pow(2).sum().item() for k in w1))
    assert apart <= TOLERANCE * update, (apart, update)
    assert any(not torch.equal(w1[k], w0[k]) for k in w1)
    # No strays: the result, and the results folder's id that keys its checkpoints (bench.paths).
    assert sorted(p.name for p in (two / "results").rglob("*") if p.is_file()) == [".bench-results-id", "seed0.json"]
