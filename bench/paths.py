"""Where the suite reads tasks and writes results and caches.

Every location can be moved with an environment variable, which is how tests keep their files in
a temporary folder and how a cluster job points at shared storage.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
ASSETS_DIR = PACKAGE_DIR / "assets"


def project_root() -> Path:
    return Path(os.environ.get("BENCH_ROOT", PACKAGE_DIR.parent))


def task_dirs() -> list[Path]:
    """The project's tasks/ plus any folders in BENCH_TASKS_PATH (os.pathsep separated)."""
    extra = [Path(p) for p in os.environ.get("BENCH_TASKS_PATH", "").split(os.pathsep) if p]
    return [project_root() / "tasks", *extra]


def results_dir() -> Path:
    return Path(os.environ.get("BENCH_RESULTS", project_root() / "results"))


def cache_dir() -> Path:
    """Knowledge banks, features, reference statistics and run checkpoints. Never site-packages."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "diffusion-transfer-bench"
    path = Path(os.environ.get("BENCH_CACHE", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoint_dir(result_file: Path) -> Path:
    """Where a run keeps its checkpoints; the last one holds the final method state."""
    rel = str(result_file.relative_to(result_file.parents[5]))
    return cache_dir() / "runs" / hashlib.sha256(rel.encode()).hexdigest()[:16]
