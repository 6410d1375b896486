"""`bench check METHOD...`: the plug-in contract of methods (bench/check.py), one line per check."""

from __future__ import annotations

NAME = "check"
HELP = "check that a method honours the plug-in contract (tiny profile, a few steps)"


def add_arguments(p) -> None:
    p.add_argument("methods", nargs="+", help="method names (built-in or entry point)")


def run(args, log) -> int:
    from bench.check import check_method

    failed = [m for m in args.methods if not check_method(m, log=lambda line, m=m: log(f"{m}: {line}"))]
    if failed:
        log(f"FAILED: {', '.join(failed)}")
        return 1
    log(f"passed: {', '.join(args.methods)}")
    return 0
