"""Where the tiny dit-transfer FID's variance comes from, and what that means for the profile size.

    python scripts/tiny_power.py [--datasets food101 sun397] [--methods full-ft diff-tuning]
                                 [--seeds 0 1 2] [--sampling-seeds 3] [--n 250 500 1000] [--references 2]

For each (method, dataset, training seed) it runs the tiny profile through the harness (into a
throw-away results folder), reloads the fine-tuned model and scores it repeatedly:
- sampling seed: the same model sampled with several seeds (N images each);
- reference set: the same samples scored against independent draws of the reference split
  (the synthetic generator's eval stream with other data seeds);
- training seed: the spread across training seeds of the per-model mean;
- estimator bias: FID at each N against the largest N (samples of one seed are nested: image k
  has its own noise stream, so the first 250 of 1000 are the 250-image set).
and the relative promotion of every method over full-ft, paired by training seed. Prints one table
per dataset and the per-run standard deviations the profile size follows from. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["food101", "sun397"])
    p.add_argument("--methods", nargs="+", default=["full-ft", "diff-tuning"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--sampling-seeds", type=int, default=3)
    p.add_argument("--n", nargs="+", type=int, default=[250, 500, 1000])
    p.add_argument("--references", type=int, default=2, help="independent reference draws")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the task's)")
    args = p.parse_args()
    os.environ.setdefault("BENCH_RESULTS", tempfile.mkdtemp(prefix="tiny-power-"))

    from bench.data import synthetic
    from bench.evaluate import evaluate_images
    from bench.planning import plan_run
    from bench.registry import build_method
    from bench.runner import execute, load_finetuned
    from bench.sampling import balanced_labels, sample
    from bench.tasks import load_task

    task = load_task("dit-transfer", "tiny")
    spec = task.spec
    s = spec.sampling
    ev = spec.evaluation.model_copy(update={"metrics": ["fid"]})
    nmax = max(args.n)
    fids: dict = {}  # (method, dataset, train seed, sampling seed, reference, n) -> FID
    for ds in args.datasets:
        dspec = spec.datasets[ds]
        refs = [synthetic(dspec.synthetic.model_copy(update={"seed": dspec.synthetic.seed + 1000 * r}), "eval",
                          spec.image_size).images for r in range(args.references)]
        for m in args.methods:
            for seed in args.seeds:
                run = plan_run(task, build_method(m, {}, family=task.file.family), ds, seed, steps=args.steps)
                execute(run, run.build_method(), log=lambda *_: None)
                backbone, _ = load_finetuned(run, run.build_method())
                labels = balanced_labels(nmax, dspec.num_classes)
                for j in range(args.sampling_seeds):
                    images = sample(backbone, labels, diffusion=spec.diffusion, scheduler=s.scheduler, steps=s.steps,
                                    guidance_scale=s.guidance_scale, batch_size=s.batch_size, seed=50_000 + j)
                    for r, ref in enumerate(refs):
                        for n in args.n:
                            fids[(m, ds, seed, j, r, n)] = evaluate_images(images[:n], ref, ev)[0]["fid"]
                print(f"done {m} {ds} seed {seed}", flush=True)
    report(fids, args)
    return 0


def report(fids: dict, args) -> None:
    def arr(m, ds, n):  # (train seeds, sampling seeds, references)
        return np.array([[[fids[(m, ds, s, j, r, n)] for r in range(args.references)]
                          for j in range(args.sampling_seeds)] for s in args.seeds])

    for ds in args.datasets:
        print(f"\n{ds}: FID standard deviations (mean over the other factors)")
        print(f"  {'method':14s} {'N':>5s} {'mean':>7s} {'sd(train)':>10s} {'sd(sampling)':>13s} "
              f"{'sd(reference)':>14s} {'bias vs N=' + str(max(args.n)):>14s}")
        for m in args.methods:
            top = arr(m, ds, max(args.n)).mean()
            for n in args.n:
                a = arr(m, ds, n)
                sd_train = a.mean(axis=(1, 2)).std(ddof=1) if len(args.seeds) > 1 else float("nan")
                sd_samp = a.std(axis=1, ddof=1).mean() if args.sampling_seeds > 1 else float("nan")
                sd_ref = a.std(axis=2, ddof=1).mean() if args.references > 1 else float("nan")
                print(f"  {m:14s} {n:5d} {a.mean():7.2f} {sd_train:10.2f} {sd_samp:13.2f} {sd_ref:14.2f} "
                      f"{a.mean() - top:14.2f}")
    base = "full-ft"
    if base in args.methods:
        for m in [x for x in args.methods if x != base]:
            for n in args.n:
                # Paired by training seed, sampling seed and reference: the noise both share cancels.
                promo = np.array([[100 * (fids[(base, ds, s, 0, 0, n)] - fids[(m, ds, s, 0, 0, n)])
                                   / fids[(base, ds, s, 0, 0, n)] for ds in args.datasets] for s in args.seeds])
                print(f"\n{m} vs {base}, N={n}: relative promotion per seed (rows) and dataset (columns), %")
                print(np.round(promo, 1))
                print(f"  per-seed mean over these datasets: {np.round(promo.mean(1), 2)}; "
                      f"sd {promo.mean(1).std(ddof=1):.2f}; per-cell sd {np.round(promo.std(0, ddof=1), 1)}")


if __name__ == "__main__":
    sys.exit(main())
