"""`bench`: the command line. Each subcommand is a module in bench/commands/ with NAME, HELP,
add_arguments(parser) and run(args, log) -> exit code; add a new one to SUBCOMMANDS.

Bad input gives one line on stderr and exit code 2; a run that fails (e.g. a diverging loss)
exits 1. Neither leaves anything under results/.
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


if __name__ == "__main__":
    sys.exit(main())
