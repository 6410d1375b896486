"""Result files: one JSON per run, at a deterministic path, written atomically.

    results/<task>@v<version>/<profile>/<method>/<config-hash>/<dataset>/seed<k>.json

A run is complete exactly when its file exists. The config hash covers the method's resolved
config and anything that changes the training budget (e.g. --steps), so runs that differ are
never mixed, and a repeated command finds its earlier result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.atomic import atomic_write
from bench.paths import results_dir
from bench.spec import canonical_hash

SCHEMA_VERSION = 1


def run_config_hash(method_name: str, method_config: dict, budget: dict) -> str:
    return canonical_hash({"method": method_name, "config": method_config, "budget": budget})


def result_path(task_key: str, profile: str, method: str, config_hash: str, dataset: str, seed: int,
                root: Path | None = None) -> Path:
    return (root or results_dir()) / task_key / profile / method / config_hash / dataset / f"seed{seed}.json"


def write_json_atomic(path: Path, data: Any) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
