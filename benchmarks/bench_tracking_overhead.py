"""Cost of tracking a metric during training, against an untracked run plus the evaluations.

Trains the tiny DiT (class-transfer family, one tiny dataset) twice with the shared trainer:
untracked, and tracked every K steps (FID on a fixed evaluation set). The tracker times its own
evaluations; the ratio

    tracked wall time / (untracked wall time + evaluation time)

is the callback's overhead beyond the evaluations it runs (curve bookkeeping, the curve in every
checkpoint). The target is <= 1.03. Medians over interleaved repeats, so background load hits both.

    python benchmarks/bench_tracking_overhead.py [--steps 60] [--every 20] [--samples 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.backbone import load_backbone, noise_schedule
from bench.families import family_class
from bench.method import TrainContext
from bench.registry import build_method
from bench.tasks import load_task
from bench.tracking import Tracker
from bench.trainer import train


def one_run(task, dataset: str, steps: int, tracked: bool) -> tuple[float, float]:
    family = family_class(task.file.family)(task, dataset)
    family.load_data()
    backbone = load_backbone(task.spec.backbone)
    family.bind(backbone)
    ctx = TrainContext(backbone, family.dataset, task.spec.diffusion.num_train_timesteps, task.spec.train.batch_size,
                       extra_data=family.extra)
    tracker = None
    if tracked:
        tracker = Tracker(task.spec.tracking, family.tracked_metrics(), lambda: family.track(0),
                          task.spec.tracking.num_samples)
    spec = task.spec.train.model_copy(update={"steps": steps, "checkpoint_every": max(1, steps // 3)})
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train(build_method("full-ft"), ctx, lambda: family.draw_batch(spec), spec, noise_schedule(task.spec.diffusion),
              seed=0, steps=steps, ckpt_dir=Path(tmp), tracker=tracker)
        wall = time.perf_counter() - t0
    return wall, (tracker.seconds if tracker else 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dataset", default="sun397")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    base = load_task("dit-transfer", "tiny")
    tracked_task = base.with_overrides({"tracking.every_steps": args.every, "tracking.num_samples": args.samples})
    plain, tracked, evals = [], [], []
    for _ in range(args.repeats):
        plain.append(one_run(base, args.dataset, args.steps, tracked=False)[0])
        wall, ev = one_run(tracked_task, args.dataset, args.steps, tracked=True)
        tracked.append(wall)
        evals.append(ev)
    p, t, e = statistics.median(plain), statistics.median(tracked), statistics.median(evals)
    n_evals = 1 + args.steps // args.every + (args.steps % args.every != 0)
    print(f"untracked run          {p:8.2f} s  ({args.steps} steps)")
    print(f"tracked run            {t:8.2f} s  ({n_evals} evaluations of {args.samples} samples, every {args.every} steps)")
    print(f"  of which evaluations {e:8.2f} s")
    print(f"ratio tracked / (untracked + evaluations) = {t / (p + e):.3f}   (target <= 1.03)")


if __name__ == "__main__":
    main()
