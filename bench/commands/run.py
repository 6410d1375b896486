"""`bench run`: train, sample and score a method on a task's datasets and seeds."""

from __future__ import annotations

from bench.commands._args import csv_list, key_value, seed_list

NAME = "run"
HELP = "train, sample and score a method on a task's datasets and seeds"


def add_arguments(p) -> None:
    p.add_argument("--task", required=True, help="task name (bench ls --tasks) or path to a task YAML")
    p.add_argument("--method", required=True, help="method name, or a composition like lora+diff-tuning")
    p.add_argument("--profile", default="paper", help="paper (real weights, GPU) or tiny (CPU, offline)")
    p.add_argument("--dataset", action="append", type=csv_list, help="dataset(s) to run; default: all of the task's")
    p.add_argument("--seeds", type=seed_list, help="comma-separated seeds; default: the task's")
    p.add_argument("--steps", type=int, help="override the training budget (recorded; results keyed apart)")
    p.add_argument("--set", dest="overrides", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                   help="method config override, e.g. --set rank=16 (composed: --set lora.rank=16)")
    p.add_argument("--force", action="store_true", help="redo runs whose result already exists")
    p.add_argument("--resume", action="store_true", help="continue interrupted runs from their last checkpoint")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    g = p.add_argument_group("scale-out (submitit)")
    g.add_argument("--executor", choices=["inline", "submitit"], default="inline",
                   help="inline: runs one after another in this process; submitit: one job per (dataset, seed)")
    g.add_argument("--cluster", choices=["slurm", "local", "debug"], default="slurm",
                   help="submitit back-end: a Slurm job array, local subprocesses, or in-process debug")
    g.add_argument("--partition", help="Slurm partition")
    g.add_argument("--timeout-min", type=int, default=24 * 60)
    g.add_argument("--gpus-per-node", type=int, default=1)
    p.add_argument("--results-dir", help="write results here instead of results/ (same as BENCH_RESULTS)")


def run(args, log) -> int:
    import os

    from bench.executors import ClusterOptions, run_requests
    from bench.runner import RunRequest, plan, resolve_device
    from bench.tasks import load_task

    if args.results_dir:
        os.environ["BENCH_RESULTS"] = args.results_dir
    resolve_device(args.device)
    task = load_task(args.task, args.profile)
    datasets = [d for group in args.dataset for d in group] if args.dataset else None
    method, names, seeds = plan(task, args.method, dict(args.overrides), datasets, args.seeds, args.steps)
    log(f"{task.key} [{task.profile}] method={method.full_name} datasets={','.join(names)} "
        f"seeds={','.join(map(str, seeds))}")
    requests = [RunRequest(task, args.method, dict(args.overrides), name, seed, args.steps, args.force, args.resume,
                           args.device) for name in names for seed in seeds]
    opts = ClusterOptions(cluster=args.cluster, partition=args.partition, timeout_min=args.timeout_min,
                          gpus_per_node=args.gpus_per_node)
    run_requests(requests, args.executor, opts, log)
    return 0
