"""`bench run`: train, sample and score a method on a task's datasets and seeds."""

from __future__ import annotations

from bench.commands._args import (add_results_dir, csv_list, device_name, key_value, key_values, same_key, seed_list,
                                  yaml_value)

NAME = "run"
HELP = "train, sample and score a method on a task's datasets and seeds"


def add_arguments(p) -> None:
    p.add_argument("--task", required=True, help="task name (bench ls --tasks) or path to a task YAML")
    p.add_argument("--method", required=True, help="method name, or a composition like lora+diff-tuning")
    p.add_argument("--profile", default="paper",
                   help="the task's profile (default: paper, real weights on a GPU); tiny: the CPU, offline analog; "
                        "some tasks have more (corruption-sweep: paper-ldm4); `bench ls --profiles` lists each task's")
    p.add_argument("--dataset", action="append", type=csv_list, help="dataset(s) to run; default: all of the task's")
    p.add_argument("--seeds", type=seed_list, help="comma-separated seeds; default: the task's")
    p.add_argument("--steps", type=int, help="override the training budget (recorded; results keyed apart)")
    p.add_argument("--smoke", action="store_true",
                   help="a setup check in seconds: a few training steps and a shrunken evaluation (samples, "
                        "banks, Fisher data, grids; the family's smoke_overrides), keyed apart and left out of "
                        "reports (same as --task-set smoke=true)")
    p.add_argument("--set", dest="overrides", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                   help="method config override, e.g. --set rank=16 (composed: --set lora.rank=16)")
    p.add_argument("--sweep", action="append", type=key_values, default=[], metavar="KEY=V1,V2,...",
                   help="one run per value (grid over several --sweep): a method config field (tau, "
                        "lora.rank) or a dotted task path (knowledge_bank.num_images); default: the task's sweep")
    p.add_argument("--task-set", dest="task_sets", action="append", type=key_value, default=[], metavar="PATH=VALUE",
                   help="override a task setting for these runs (keyed apart), e.g. tracking.every_steps=50")
    p.add_argument("--track", type=int, metavar="K",
                   help="track the family's metrics every K steps (same as --task-set tracking.every_steps=K)")
    p.add_argument("--backbone-from", metavar="RESULT",
                   help="start from the final model of a finished run (its result file, e.g. a corruption-sweep "
                        "pre-training run); recorded as task override backbone.from_run, pinned by content")
    p.add_argument("--force", action="store_true", help="redo runs whose result already exists")
    p.add_argument("--resume", action="store_true", help="continue interrupted runs from their last checkpoint")
    p.add_argument("--device", default="auto", type=device_name,
                   help="auto (CUDA when available), cpu, cuda, cuda:N or mps")
    g = p.add_argument_group("scale-out (submitit)")
    g.add_argument("--executor", choices=["inline", "submitit"], default="inline",
                   help="inline: runs one after another in this process; submitit: one job per (dataset, seed)")
    g.add_argument("--cluster", choices=["slurm", "local", "debug"], default="slurm",
                   help="submitit back-end: a Slurm job array, local subprocesses, or in-process debug")
    g.add_argument("--partition", help="Slurm partition")
    g.add_argument("--timeout-min", type=int, default=24 * 60)
    g.add_argument("--gpus-per-node", type=int, default=1)
    add_results_dir(p, "write results here instead of results/ (same as BENCH_RESULTS)")


def check_device(name: str) -> None:
    """The device exists on this machine (its name was checked by argparse)."""
    import torch

    from bench.errors import BenchError
    from bench.runner import resolve_device

    resolve_device(name)  # CUDA asked for where there is none
    if name.startswith("cuda:") and int(name.split(":")[1]) >= torch.cuda.device_count():
        raise BenchError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                         f"(cuda:0 ... cuda:{torch.cuda.device_count() - 1})")
    if name == "mps" and not torch.backends.mps.is_available():
        raise BenchError("--device mps: MPS is not available on this machine; use --device cpu")


def check_overlaps(args) -> None:
    """A key both set (--set, --task-set) and swept (--sweep): the sweep would silently win."""
    from bench.errors import BenchError

    swept = [k for k, _ in args.sweep]
    for i, k in enumerate(swept):
        for other in swept[i + 1:]:
            if same_key(k, other):
                raise BenchError(f"--sweep {k}=... and --sweep {other}=... sweep the same setting; give it once")
    for flag, pairs in (("--set", args.overrides), ("--task-set", args.task_sets)):
        for k, _ in pairs:
            for s in swept:
                if same_key(k, s):
                    raise BenchError(f"{flag} {k}=... and --sweep {s}=... address the same setting; "
                                     f"drop one (the sweep would override the {flag})")


def run(args, log) -> int:
    import os

    from bench.executors import ClusterOptions, check_cluster, run_planned
    from bench.paths import check_results_dir
    from bench.runner import RunOptions, plan
    from bench.tasks import load_task

    if args.results_dir is not None:
        os.environ["BENCH_RESULTS"] = args.results_dir
    check_results_dir()  # a file in the way fails now, not after the training
    if args.executor == "submitit":
        check_cluster(args.cluster)  # no Slurm here: an error now, not local jobs that say "slurm"
    check_device(args.device)
    check_overlaps(args)
    task = load_task(args.task, args.profile)
    datasets = [d for group in args.dataset for d in group] if args.dataset else None
    task_sets = {k: yaml_value(v) for k, v in args.task_sets}
    if args.smoke:
        task_sets["smoke"] = True
    if args.track is not None:
        task_sets["tracking.every_steps"] = args.track
    if args.backbone_from:
        from bench.backbone.from_run import pin

        task_sets["backbone.from_run"] = pin(args.backbone_from)
    sweep = {k: [yaml_value(v) for v in values] for k, values in args.sweep} or None
    points, names, seeds = plan(task, args.method, dict(args.overrides), datasets, args.seeds, args.steps,
                                sweep=sweep, task_sets=task_sets)
    swept = f" sweep={';'.join(','.join(f'{k}={v}' for k, v in p.sweep.items()) for p in points)}" if sweep else ""
    log(f"{task.key} [{task.profile}] method={points[0].method.full_name} datasets={','.join(names)} "
        f"seeds={','.join(map(str, seeds))}{swept}")
    runs = [r for p in points for r in p.runs]
    options = RunOptions(force=args.force, resume=args.resume, device=args.device)
    opts = ClusterOptions(cluster=args.cluster, partition=args.partition, timeout_min=args.timeout_min,
                          gpus_per_node=args.gpus_per_node)
    run_planned(runs, options, args.executor, opts, log)
    return 0
