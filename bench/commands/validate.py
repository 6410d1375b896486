"""`bench validate`: check a task YAML file (schema, every profile)."""

from __future__ import annotations

from bench.errors import BenchError

NAME = "validate"
HELP = "check a task YAML file (schema, every profile)"


def add_arguments(p) -> None:
    p.add_argument("paths", nargs="+")


def run(args, log) -> int:
    from pathlib import Path

    from bench.tasks import read_task_file

    for path in args.paths:
        p = Path(path)
        if not p.exists():
            raise BenchError(f"no such file: {path}")
        tf = read_task_file(p)
        log(f"ok  {path}: {tf.name}@v{tf.version} ({tf.family}), profiles: {', '.join(tf.profiles)}")
    return 0
