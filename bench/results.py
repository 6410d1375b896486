"""Result files: one JSON per run, at a deterministic path, written atomically.

    results/<task>@v<version>/<profile>/<method>/<config-dir>/<dataset>/seed<k>.json

(`<method>` as `method_folder` writes it: `peft:lora` is the folder `peft_lora`.)

`<config-dir>` is the config hash (method config, training budget, task overrides), prefixed by
the task overrides and swept values when the run has any (`tau=0.5~1a2b3c4d5e6f`), so runs that
differ are never mixed and a sweep is readable in the tree.

A run is complete when its file exists AND its recorded run identity (`run_identity`: the whole
resolved run spec, method config, budget, overrides, and the sha256 of its training and reference
data) still matches what the task file resolves to now. A result whose identity no longer matches
is stale: `bench run` redoes it and reports leave it out, naming it.

The config hash and the run identity are worked out in one place, bench/planning.py, for runs
being planned and for result files being read; this module only lays the files out and writes them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bench.atomic import atomic_write
from bench.paths import results_dir

SCHEMA_VERSION = 1

_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")
LABEL_MAX = 120  # characters of readable label before the config hash


def config_dir(config_hash: str, label: dict | None = None) -> str:
    """The config folder: the hash, prefixed by a run's label (its task overrides and swept
    values, bench/planning.py `config_folder`)."""
    if not label:
        return config_hash
    text = _UNSAFE.sub("_", ",".join(f"{k}={_fmt_value(v)}" for k, v in sorted(label.items())))
    if len(text) > LABEL_MAX:  # file systems cap a name at 255 bytes; the hash keeps it unique
        text = text[: LABEL_MAX - 3] + "..."
    return f"{text}~{config_hash}"


def _fmt_value(v) -> str:
    return repr(v) if isinstance(v, float) else str(_sorted_keys(v))


def _sorted_keys(v):
    """A dict value (e.g. `backbone.from_run`) labels its folder in key order, so the label a run
    writes equals the one its stored (key-sorted) JSON gives back."""
    if isinstance(v, dict):
        return {k: _sorted_keys(v[k]) for k in sorted(v)}
    if isinstance(v, list):
        return [_sorted_keys(x) for x in v]
    return v


def method_folder(method: str) -> str:
    """A method's folder: its name, with the `:` of `peft:<name>` written `_` (Windows cannot check
    out a path with a colon)."""
    return method.replace(":", "_")


def result_path(task_key: str, profile: str, method: str, config_folder: str, dataset: str, seed: int,
                root: Path | None = None) -> Path:
    """Where a run's result file lives; `config_folder` is `config_dir(config_hash, label)`."""
    return (root or results_dir()) / task_key / profile / method_folder(method) / config_folder / dataset / f"seed{seed}.json"


def write_json_atomic(path: Path, data: Any) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


_MOVED = ("run_config_hash", "run_identity", "stored_identity")


def __getattr__(name: str):
    """The hashes moved to bench/planning.py; old imports from here keep working. Imported by name
    when asked for: planning builds on this module, and this forward must not make a cycle of it."""
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module("bench.planning"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
