"""An interrupted run, resumed, ends with the same weights as an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time

import torch

from bench.families.class_transfer import labelled_batch
from bench.backbone import load_backbone, noise_schedule, state_sha256
from bench.data import load_split
from bench.method import TrainContext
from bench.registry import build_method
from bench.tasks import load_task
from bench.trainer import latest_checkpoint, train
from bench.spec import TrainSpec
from conftest import ROOT, Interrupt, crash_after, result_files, small_task_file


def _train(tmp_path, ckpt, steps, resume=False, stop_at=None):
    task = load_task("dit-transfer", "tiny")
    backbone = load_backbone(task.spec.backbone)
    ds = task.spec.datasets["flowers102"]
    data = load_split(ds, "train", task.spec.image_size)
    method = build_method("diff-tuning")
    bank = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ctx = TrainContext(backbone, ds, 1000, 8, extra_data=lambda name: {"x0": bank, "y": torch.full((len(bank),), 64)})
    if stop_at is not None:  # simulate a crash right after step `stop_at` has been checkpointed
        crash_after(method, stop_at)
    spec = TrainSpec(batch_size=8, steps=steps, lr=1e-3, checkpoint_every=3)
    try:
        train(method, ctx, lambda: labelled_batch(data, ctx.backbone, spec.batch_size, spec), spec, noise_schedule(task.spec.diffusion), seed=5, steps=steps, ckpt_dir=ckpt,
              resume=resume)
    except Interrupt:
        return None
    return state_sha256(backbone.model.state_dict())


def test_resume_from_checkpoint_is_bit_identical(tmp_path, capsys):
    straight = _train(tmp_path, tmp_path / "a", steps=8)
    assert _train(tmp_path, tmp_path / "b", steps=8, stop_at=4) is None
    assert latest_checkpoint(tmp_path / "b").name == "step-3.safetensors"
    capsys.readouterr()
    resumed = _train(tmp_path, tmp_path / "b", steps=8, resume=True)
    assert resumed == straight
    assert "resume from step 3 of 8 (" in capsys.readouterr().out  # says where it continues
    # Without --resume a stale checkpoint is discarded, not silently continued.
    assert _train(tmp_path, tmp_path / "b", steps=8) == straight


def _default_sigint():
    """A child inherits an ignored or blocked SIGINT from its parent, and Python then never raises
    KeyboardInterrupt; under pytest-xdist the worker's disposition depends on what ran before in it
    (the run then finished with rc 0 despite the signal). Give the `bench` child a terminal's default."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_cli_interrupt_then_resume_matches_uninterrupted(isolated_dirs, tmp_path):
    task = small_task_file(tmp_path, train={"batch_size": 8, "steps": 160, "lr": 1e-4, "checkpoint_every": 20,
                                            "class_dropout": 0.1, "hflip": True})
    args = [sys.executable, "-m", "bench", "run", "--task", str(task), "--method", "full-ft", "--profile", "tiny",
            "--dataset", "sun397", "--seeds", "0"]
    env = dict(os.environ)
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    runs = isolated_dirs / "cache" / "runs"
    deadline = time.time() + 300
    while time.time() < deadline and not list(runs.glob("*/step-40.safetensors")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "--resume" in err
    assert result_files(isolated_dirs / "results") == []

    done = subprocess.run(args + ["--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    (path,) = result_files(isolated_dirs / "results")
    resumed = json.loads(path.read_text())
    assert resumed["training"]["resumed_from_step"] >= 40

    env2 = {**env, "BENCH_RESULTS": str(tmp_path / "r2"), "BENCH_CACHE": str(tmp_path / "c2")}
    straight = subprocess.run(args, cwd=ROOT, env=env2, capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr
    (path2,) = result_files(tmp_path / "r2")
    uninterrupted = json.loads(path2.read_text())
    assert uninterrupted["training"]["resumed_from_step"] == 0
    assert resumed["provenance"]["final_state_sha256"] == uninterrupted["provenance"]["final_state_sha256"]
    assert resumed["metrics"] == uninterrupted["metrics"]
