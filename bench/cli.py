"""`bench`: the command line. Each subcommand is a module in bench/commands/ with NAME, HELP,
add_arguments(parser) and run(args, log) -> exit code; add a new one to SUBCOMMANDS.

Bad input gives one line on stderr and exit code 2; a run that fails (e.g. a diverging loss)
exits 1. Neither leaves anything under results/. Any other exception is a bug: it too becomes one
`error:` line (its type and message) with exit 1, and BENCH_DEBUG=1 shows its traceback. A reader
that closes the pipe early (`bench ls | head`) ends the command quietly with exit 141 (128 +
SIGPIPE, what `yes | head` gives): the output was cut short, which is not an error to report.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from bench.errors import BenchError

SUBCOMMANDS = [
    "bench.commands.run",
    "bench.commands.ls",
    "bench.commands.validate",
    "bench.commands.check",
    "bench.commands.verify",
    "bench.commands.build_tiny",
    "bench.commands.convert_iddpm",
    "bench.commands.score",
    "bench.commands.leaderboard",
    "bench.commands.figures",
    "bench.commands.analyze",
    "bench.commands.export",
    "bench.commands.calibrate",
]


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are the suite's one-line, exit-2 errors."""

    def error(self, message):
        raise BenchError(f"{self.prog}: {message}")


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    p = _Parser(prog="bench", description="Benchmark suite for transfer learning of diffusion models.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    modules = {}
    for path in SUBCOMMANDS:
        mod = importlib.import_module(path)
        mod.add_arguments(sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP))
        modules[mod.NAME] = mod
    return p, modules


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    def log(msg: str) -> None:
        print(msg, flush=True)

    try:
        parser, modules = build_parser()
        args = parser.parse_args(argv)
        return modules[args.command].run(args, log)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted; rerun with --resume to continue from the last checkpoint", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return 141
    except Exception as exc:  # a bug: one line, the traceback on request
        if os.environ.get("BENCH_DEBUG"):
            raise
        text = " ".join(str(exc).split()) or "(no message)"
        print(f"error: unexpected {type(exc).__name__}: {text} (a bug in bench; rerun with BENCH_DEBUG=1 for "
              f"the traceback and report it)", file=sys.stderr)
        return 1


def _quiet_stdout() -> None:
    """The reader of stdout is gone: point stdout at /dev/null so that the interpreter's final flush
    raises no second BrokenPipeError."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def entry() -> int:
    """The console script: main(), plus a pipe closed while the interpreter flushes at exit."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        code = 141
    return code


if __name__ == "__main__":
    sys.exit(entry())
