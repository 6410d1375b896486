"""Result files: one JSON per run, at a deterministic path, written atomically.

    results/<task>@v<version>/<profile>/<method>/<config-dir>/<dataset>/seed<k>.json

`<config-dir>` is the config hash (method config, training budget, task overrides), prefixed by
the swept values when the run is a point of a sweep (`tau=0.5~1a2b3c4d5e6f`), so runs that differ
are never mixed and a sweep is readable in the tree.

A run is complete when its file exists AND its recorded run identity (`run_identity`: the whole
resolved run spec, method config, budget, overrides, and the sha256 of its training and reference
data) still matches what the task file resolves to now. A result whose identity no longer matches
is stale: `bench run` redoes it and reports leave it out, naming it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bench.atomic import atomic_write
from bench.paths import results_dir
from bench.spec import canonical_hash

SCHEMA_VERSION = 1


def run_config_hash(method_name: str, method_config: dict, budget: dict, task_overrides: dict | None = None) -> str:
    key = {"method": method_name, "config": method_config, "budget": budget}
    if task_overrides:  # absent when empty, so results from before overrides existed keep their key
        key["task_overrides"] = task_overrides
    return canonical_hash(key)


_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")
LABEL_MAX = 120  # characters of readable label before the config hash


def config_dir(config_hash: str, sweep: dict | None = None) -> str:
    """The config folder: the hash, prefixed by the swept values of a sweep point."""
    if not sweep:
        return config_hash
    label = _UNSAFE.sub("_", ",".join(f"{k}={_fmt_value(v)}" for k, v in sorted(sweep.items())))
    if len(label) > LABEL_MAX:  # file systems cap a name at 255 bytes; the hash keeps it unique
        label = label[: LABEL_MAX - 3] + "..."
    return f"{label}~{config_hash}"


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


def result_path(task_key: str, profile: str, method: str, config_hash: str, dataset: str, seed: int,
                root: Path | None = None, sweep: dict | None = None) -> Path:
    return (root or results_dir()) / task_key / profile / method / config_dir(config_hash, sweep) / dataset / f"seed{seed}.json"


def _strip_none(obj):
    if isinstance(obj, dict):
        return {k: _strip_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_strip_none(v) for v in obj]
    return obj


def run_identity(resolved_spec: dict, task_overrides: dict, dataset: str, method: str, method_config: dict,
                 budget: dict, data: dict[str, str]) -> str:
    """Hash of everything that can move a run's numbers: the resolved profile spec with the run's
    overrides applied (this dataset's entry only; other datasets, the seed list and the sweep
    declaration do not change this run), the method and its config, the budget, and the sha256 of
    the training and reference data. Unset (None) fields are dropped, so adding an optional schema
    field does not make every earlier result stale."""
    from bench.tasks import apply_overrides

    spec = apply_overrides(resolved_spec["spec"], task_overrides)
    body = {k: v for k, v in spec.items() if k not in ("datasets", "seeds", "sweep")}
    body["dataset"] = spec["datasets"][dataset]
    return canonical_hash(_strip_none({
        "task": resolved_spec["task"], "version": resolved_spec["version"], "family": resolved_spec["family"],
        "profile": resolved_spec["profile"], "spec": body, "method": method, "method_config": method_config,
        "budget": budget, "data": data,
    }), length=16)


def stored_identity(result: dict) -> str:
    """The run identity of a result file, from what it recorded."""
    return run_identity(result["resolved_spec"], result.get("task_overrides") or {}, result["dataset"],
                        result["method"], result["method_config"], result["budget"],
                        {"train": result["provenance"]["train_data_sha256"], "reference": result["reference"]["sha256"]})


def write_json_atomic(path: Path, data: Any) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
