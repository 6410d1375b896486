"""Argument types shared by subcommands. Each rejects what it cannot use with one line (argparse
turns ArgumentTypeError into the CLI's one-line, exit-2 error): nothing is silently dropped."""

from __future__ import annotations

import argparse
import re

SEED_LIMIT = 2**63  # torch's generators take signed 64-bit seeds


def csv_list(text: str) -> list[str]:
    """A comma-separated list with no empty elements (`a,,b`, `a,` and `""` are errors, not a
    shorter list: an empty `--dataset ""` must not mean "all datasets")."""
    items = [t.strip() for t in text.split(",")]
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a comma-separated list, got an empty value")
    if any(not t for t in items):
        raise argparse.ArgumentTypeError(f"empty element in the list {text!r} (a stray comma?)")
    return items


def seed_list(text: str) -> list[int]:
    """Seeds: integers from 0 to 2^63 - 1, at least one."""
    items = csv_list(text)
    try:
        seeds = [int(s) for s in items]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be integers like 0,1,2, got {text!r}") from None
    bad = [s for s in seeds if not 0 <= s < SEED_LIMIT]
    if bad:
        raise argparse.ArgumentTypeError(f"seeds must be integers from 0 to 2^63-1, got {bad[0]}")
    return seeds


def key_value(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    k, v = text.split("=", 1)
    if not k.strip():
        raise argparse.ArgumentTypeError(f"expected key=value with a key, got {text!r}")
    return k.strip(), v.strip()


def key_values(text: str) -> tuple[str, list[str]]:
    """KEY=V1,V2,... (a sweep)."""
    k, v = key_value(text)
    if not v:
        raise argparse.ArgumentTypeError(f"expected KEY=V1,V2,..., got {text!r}")
    return k, csv_list(v)


def same_key(a: str, b: str) -> bool:
    """Whether two override keys address the same setting (`tau` and `diff-tuning.tau`, `eta` and
    `params.eta`)."""
    return a == b or a.endswith("." + b) or b.endswith("." + a)


DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def device_name(text: str) -> str:
    """--device: auto, cpu, mps, cuda or cuda:N."""
    if not DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use auto, cpu, cuda, cuda:N or mps")
    return text


def folder(text: str) -> str:
    """A folder argument (--results-dir): not empty (an empty one would mean the working directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder, got an empty value")
    return text


def add_results_dir(p, help: str = "results folder (default: $BENCH_RESULTS or ./results)") -> None:
    """`--results-dir DIR` (every command that reads or writes results), with `--results` kept as a
    hidden alias for scripts written before the flags were unified."""
    p.add_argument("--results-dir", dest="results_dir", type=folder, metavar="DIR", help=help)
    p.add_argument("--results", dest="results_dir", type=folder, help=argparse.SUPPRESS)


def yaml_value(text: str):
    """A command-line value as YAML reads it (numbers, booleans, lists), like task files."""
    import yaml

    from bench.tasks import strict_yaml_load

    try:
        return strict_yaml_load(text)
    except yaml.YAMLError:
        return text
