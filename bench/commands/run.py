"""`bench run`: train, sample and score a method on a task's datasets and seeds."""

from __future__ import annotations

from bench.commands._args import csv_list, key_value, seed_list  # noqa: F401
from bench.errors import BenchError  # noqa: F401

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


def run(args, log) -> int:
    from bench.runner import RunRequest, execute, plan
    from bench.tasks import load_task

    task = load_task(args.task, args.profile)
    datasets = [d for group in args.dataset for d in group] if args.dataset else None
    method, names, seeds = plan(task, args.method, dict(args.overrides), datasets, args.seeds, args.steps)
    log(f"{task.key} [{task.profile}] method={method.full_name} datasets={','.join(names)} "
        f"seeds={','.join(map(str, seeds))}")
    for name in names:
        for seed in seeds:
            # A fresh method object per run: methods may keep state (injected modules).
            from bench.registry import build_method

            m = build_method(args.method, dict(args.overrides), family=task.file.family)
            execute(RunRequest(task, args.method, dict(args.overrides), name, seed, args.steps, args.force,
                               args.resume), m, log=log)
    return 0
