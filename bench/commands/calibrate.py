"""`bench calibrate`: measure a task's evaluation noise and calibrate its event rules (issue 29)."""

from __future__ import annotations

from bench.commands._args import csv_list

NAME = "calibrate"
HELP = ("re-evaluate fixed checkpoints K times with calibration seeds; writes calibration/<task>@v<N>/<profile>.json "
        "(noise sd per tracked metric, null-calibrated rule margins)")


def add_arguments(p) -> None:
    p.add_argument("--task", required=True)
    p.add_argument("--profile", default="tiny")
    p.add_argument("--method", required=True, help="the method whose modules the checkpoints carry, e.g. controlnet")
    p.add_argument("--dataset", action="append", type=csv_list, help="dataset(s); default: all of the task's")
    p.add_argument("--k", type=int, default=8, help="independent evaluations per checkpoint (at least 8)")
    p.add_argument("--finetune-dataset", help="the dataset of the one fine-tuned checkpoint (default: the first)")
    p.add_argument("--finetune-steps", type=int, help="its training steps (default: the task's budget)")
    p.add_argument("--add", action="store_true",
                   help="measure only the pre-trained checkpoint of --dataset and add it to the committed "
                        "calibration (same method and K); its fine-tuned checkpoint stays")
    p.add_argument("--rules-only", action="store_true",
                   help="re-simulate the null-calibrated rules of the committed calibration; no evaluation")


def run(args, log) -> int:
    import shlex
    import sys

    from bench import calibration
    from bench.tasks import load_task

    task = load_task(args.task, args.profile)
    if args.rules_only:
        from bench.errors import BenchError

        cal = calibration.load_calibration(task.name, task.file.version, task.profile)
        if cal is None:
            raise BenchError(f"no calibration at {calibration.calibration_path(task.name, task.file.version, task.profile)}"
                             f" to re-simulate; run `bench calibrate` without --rules-only first")
        path = calibration.write({**cal, "rules": calibration.rules_block(),
                                  "rules_command": f"bench calibrate --task {task.name} --profile {task.profile} "
                                                   f"--method {args.method} --rules-only"}, cal["command"])
        log(f"wrote  {path} (rules re-simulated)")
        return 0
    datasets = [d for g in args.dataset for d in g] if args.dataset else None
    command = "bench calibrate " + " ".join(shlex.quote(a) for a in sys.argv[sys.argv.index("calibrate") + 1:]) \
        if "calibrate" in sys.argv else "bench calibrate"
    if args.add:
        from bench.errors import BenchError

        existing = calibration.load_calibration(task.name, task.file.version, task.profile)
        if existing is None or not datasets or args.finetune_dataset or args.finetune_steps is not None:
            raise BenchError("--add needs a committed calibration to add to and --dataset, and measures no "
                             "fine-tuned checkpoint (no --finetune-dataset / --finetune-steps)")
        cal = calibration.measure(task, args.method, datasets, args.k, None, None, log, finetune=False)
        path = calibration.write(calibration.add(existing, cal, command), existing["command"])
        log(f"wrote  {path} (added {', '.join(sorted(cal['noise']))})")
        return 0
    cal = calibration.measure(task, args.method, datasets, args.k, args.finetune_dataset, args.finetune_steps, log)
    path = calibration.write(cal, command)
    log(f"wrote  {path}")
    return 0
