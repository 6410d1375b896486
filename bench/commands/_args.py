"""Argument types shared by subcommands."""

from __future__ import annotations

import argparse


def csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def seed_list(text: str) -> list[int]:
    try:
        return [int(s) for s in csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be integers like 0,1,2, got {text!r}") from None


def key_value(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    k, v = text.split("=", 1)
    return k.strip(), v.strip()


def key_values(text: str) -> tuple[str, list[str]]:
    """KEY=V1,V2,... (a sweep)."""
    k, v = key_value(text)
    values = csv_list(v)
    if not values:
        raise argparse.ArgumentTypeError(f"expected KEY=V1,V2,..., got {text!r}")
    return k, values


def yaml_value(text: str):
    """A command-line value as YAML reads it (numbers, booleans, lists), like task files."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text
