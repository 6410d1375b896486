"""`bench analyze <analysis>`: analyses of finished runs, written as their own result files."""

from __future__ import annotations

from bench.commands._args import add_results_dir, csv_list, key_value, seed_list

NAME = "analyze"
HELP = "analyses of finished runs (chain-of-forgetting, eps-mse, bank-quality); results go under <results folder>/.../analysis/"


def _fractions(text: str) -> list[float]:
    import argparse

    try:
        return [float(x) for x in csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"fractions must be numbers like 0,0.1,0.5,1, got {text!r}") from None


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="analysis", required=True)
    c = sub.add_parser("chain-of-forgetting", help="FID as the pre-trained denoiser takes over reverse steps from "
                       "the data end (Diff-Tuning, Fig. 1)")
    c.add_argument("--task", required=True)
    c.add_argument("--method", required=True, help="the fine-tuned run's method, e.g. full-ft")
    c.add_argument("--profile", default="paper")
    c.add_argument("--dataset", action="append", type=csv_list, help="dataset(s); default: all of the task's")
    c.add_argument("--seeds", type=seed_list, help="seeds of the runs; default: the task's")
    c.add_argument("--steps", type=int, help="the runs' --steps override, if they used one")
    c.add_argument("--set", dest="overrides", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                   help="the runs' method config overrides")
    c.add_argument("--fractions", type=_fractions, help="fractions of reverse steps (default: 0,0.1,...,1)")
    c.add_argument("--num-samples", type=int, help="samples per fraction (default: the task's sampling.num_samples)")
    c.add_argument("--force", action="store_true", help="redo analyses whose result exists")
    add_results_dir(c, "the results folder the runs are in; the analysis is written there too "
                       "(default: $BENCH_RESULTS or ./results)")
    e = sub.add_parser("eps-mse", help="per-timestep epsilon MSE of fine-tuned and pre-trained models on the "
                       "target's evaluation images (no sampling)")
    e.add_argument("--task", required=True)
    e.add_argument("--method", action="append", type=csv_list,
                   help="the fine-tuned runs' method(s) (default: full-ft,diff-tuning)")
    e.add_argument("--profile", default="paper")
    e.add_argument("--dataset", action="append", type=csv_list, help="dataset(s); default: all of the task's")
    e.add_argument("--seeds", type=seed_list, help="seeds of the runs; default: the task's")
    e.add_argument("--steps", type=int, help="the runs' --steps override, if they used one")
    e.add_argument("--set", dest="overrides", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                   help="the runs' method config overrides")
    e.add_argument("--buckets", type=int, default=20, help="timestep buckets over 0..T-1 (default 20)")
    e.add_argument("--num-images", type=int, default=256, help="evaluation images (default 256)")
    e.add_argument("--retrain", action="store_true", help="re-train a run whose checkpoints are not in this cache "
                   "(training only; its final state must match the one its result records)")
    e.add_argument("--force", action="store_true", help="redo analyses whose result exists")
    add_results_dir(e, "the results folder the runs are in; the analysis is written there too "
                       "(default: $BENCH_RESULTS or ./results)")
    b = sub.add_parser("bank-quality", help="FID of Diff-Tuning's knowledge bank against the source's held-out "
                       "split, and of a real held-out split of the same size (the floor)")
    b.add_argument("--task", required=True)
    b.add_argument("--profile", default="paper")
    b.add_argument("--force", action="store_true", help="redo the analysis if its result exists")
    add_results_dir(b, "the results folder the analysis is written to (default: $BENCH_RESULTS or ./results)")


def run(args, log) -> int:
    import os

    if args.analysis == "eps-mse":
        return _eps_mse(args, log)
    if args.analysis == "bank-quality":
        return _bank_quality(args, log)

    from bench.analysis import chain_of_forgetting as cof
    from bench.paths import check_results_dir
    from bench.runner import plan
    from bench.tasks import load_task

    if args.results_dir is not None:
        os.environ["BENCH_RESULTS"] = args.results_dir
    check_results_dir()
    fractions = cof.check_fractions(args.fractions if args.fractions is not None else cof.DEFAULT_FRACTIONS)
    if args.num_samples is not None and args.num_samples <= 0:
        from bench.errors import BenchError

        raise BenchError(f"--num-samples must be positive, got {args.num_samples}")
    task = load_task(args.task, args.profile)
    datasets = [d for g in args.dataset for d in g] if args.dataset else None
    # plan() checks method, datasets and extractor before any sampling (bad input fails fast), and
    # names each fine-tuned run exactly as `bench run` planned it.
    points, _, _ = plan(task, args.method, dict(args.overrides), datasets, args.seeds, args.steps)
    for run in (r for p in points for r in p.runs):
        cof.run(run, fractions=fractions, num_samples=args.num_samples, force=args.force, log=log)
    return 0


def _eps_mse(args, log) -> int:
    import os

    from bench.analysis import eps_mse
    from bench.paths import check_results_dir
    from bench.runner import plan
    from bench.tasks import load_task

    if args.results_dir is not None:
        os.environ["BENCH_RESULTS"] = args.results_dir
    check_results_dir()
    task = load_task(args.task, args.profile)
    eps_mse.timesteps(args.buckets, task.spec.diffusion.num_train_timesteps)  # bad input fails fast
    if args.num_images <= 0:
        from bench.errors import BenchError

        raise BenchError(f"--num-images must be positive, got {args.num_images}")
    methods = [m for g in args.method for m in g] if args.method else ["full-ft", "diff-tuning"]
    datasets = [d for g in args.dataset for d in g] if args.dataset else None
    runs = []
    for method in methods:
        points, _, _ = plan(task, method, dict(args.overrides), datasets, args.seeds, args.steps)
        runs += [r for p in points for r in p.runs]
    for r in runs:
        eps_mse.run(r, buckets=args.buckets, num_images=args.num_images, force=args.force, retrain=args.retrain,
                    log=log)
    return 0


def _bank_quality(args, log) -> int:
    import os

    from bench.analysis import bank_quality
    from bench.paths import check_results_dir
    from bench.tasks import load_task

    if args.results_dir is not None:
        os.environ["BENCH_RESULTS"] = args.results_dir
    check_results_dir()
    bank_quality.run(load_task(args.task, args.profile), force=args.force, log=log)
    return 0
