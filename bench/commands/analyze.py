"""`bench analyze <analysis>`: analyses of finished runs, written as their own result files."""

from __future__ import annotations

from bench.commands._args import add_results_dir, csv_list, key_value, seed_list

NAME = "analyze"
HELP = "analyses of finished runs (chain-of-forgetting); results go under <results folder>/.../analysis/"


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


def run(args, log) -> int:
    import os

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
