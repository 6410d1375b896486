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
    """The project's tasks/ plus any folders in BENCH_TASKS_PATH (os.pathsep separated). An entry
    that is not a folder is an error, not silently ignored: a typo would otherwise hide its tasks."""
    from bench.errors import BenchError

    extra = [Path(p) for p in os.environ.get("BENCH_TASKS_PATH", "").split(os.pathsep) if p]
    for folder in extra:
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "does not exist"
            raise BenchError(f"BENCH_TASKS_PATH entry {str(folder)!r} {what}; fix or unset BENCH_TASKS_PATH")
    return [project_root() / "tasks", *extra]


def results_dir() -> Path:
    return Path(os.environ.get("BENCH_RESULTS") or project_root() / "results")  # empty: unset, not "."


def is_project_results(root: Path) -> bool:
    """Whether `root` is the project's own results/ folder, whose reports are the committed ones."""
    return Path(root).resolve() == (project_root() / "results").resolve()


def report_outputs(results_root: Path) -> dict[str, Path]:
    """Where report commands write by default for a results folder (README, "Where files go").

    The project's own results/ (the default) keeps the committed reports: LEADERBOARD.md and
    reports/{tables,figures,index.html,results.parquet}. Any other results folder DIR gets its own
    sibling folder DIR-reports/ with LEADERBOARD.md, tables/, figures/, index.html and
    results.parquet, so that reporting on another folder never overwrites the committed reports;
    an explicit --out/--tables-dir/... writes where it says."""
    from bench.errors import BenchError

    if is_project_results(results_root):
        root = project_root()
        return {"markdown": root / "LEADERBOARD.md", "tables": root / "reports" / "tables",
                "html": root / "reports" / "index.html", "figures": root / "reports" / "figures",
                "parquet": root / "reports" / "results.parquet"}
    folder = Path(results_root).resolve()
    out = folder.parent / f"{folder.name or 'results'}-reports"
    committed = [(project_root() / "LEADERBOARD.md").resolve(), (project_root() / "reports").resolve()]
    if any(out == c or c in out.parents for c in committed):
        raise BenchError(f"the default report folder of {str(results_root)!r} would be {out}, inside the "
                         f"committed reports; pass explicit output paths (--out ...)")
    return {"markdown": out / "LEADERBOARD.md", "tables": out / "tables", "html": out / "index.html",
            "figures": out / "figures", "parquet": out / "results.parquet"}


def existing_results_dir(root: Path | None = None) -> Path:
    """A results folder to read (report commands): it must exist and be a folder, so that a typo
    is an error rather than an empty report."""
    from bench.errors import BenchError

    root = Path(root) if root is not None else results_dir()
    if not root.exists():
        raise BenchError(f"no results folder at {str(root)!r} (--results-dir or BENCH_RESULTS)")
    if not root.is_dir():
        raise BenchError(f"results folder {str(root)!r} is not a folder (--results-dir or BENCH_RESULTS)")
    return root


def check_results_dir(root: Path | None = None) -> Path:
    """The results folder, checked before any work: a folder (or one that can be created) that this
    process can write. Creates nothing."""
    from bench.errors import BenchError

    root = Path(root) if root is not None else results_dir()
    where = f"results folder {str(root)!r} (--results-dir or BENCH_RESULTS)"
    if root.exists():
        if not root.is_dir():
            raise BenchError(f"{where} is not a folder; pass a folder to --results-dir")
        if not os.access(root, os.W_OK | os.X_OK):
            raise BenchError(f"{where} is not writable; pass a writable folder to --results-dir")
        return root
    parent = root.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise BenchError(f"{where} cannot be created: {str(parent)!r} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BenchError(f"{where} cannot be created: {str(parent)!r} is not writable")
    return root


def cache_dir() -> Path:
    """Knowledge banks, features, reference statistics and run checkpoints. Never site-packages."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "diffusion-transfer-bench"
    path = Path(os.environ.get("BENCH_CACHE", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


RESULTS_ID = ".bench-results-id"


def results_folder_id(root: Path) -> str:
    """A random id kept in the results folder (`.bench-results-id`, created on first use where the
    folder is writable). Two folders at the same path on two machines that share a cache differ
    by it; processes writing one folder on shared storage read the same id."""
    import uuid

    path = Path(root) / RESULTS_ID
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    except OSError:
        return ""
    tmp = path.with_name(f"{RESULTS_ID}.{os.getpid()}.{uuid.uuid4().hex[:8]}.new")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(uuid.uuid4().hex + "\n")
        try:
            os.link(tmp, path)  # atomic: exactly one process creates it, complete
        except FileExistsError:
            pass
        return path.read_text().strip()
    except OSError:
        return ""  # a read-only results folder: the path alone keys its checkpoints
    finally:
        tmp.unlink(missing_ok=True)


def checkpoint_dir(result_file: Path) -> Path:
    """Where a run keeps its checkpoints; the last one holds the final method state.

    Keyed by the result file's resolved absolute path and its results folder's id, so two results
    folders (or one folder path on two machines) sharing a cache never share a checkpoint folder:
    a fresh run in one can never delete an interrupted run's checkpoints in another. A results
    folder that moves leaves its checkpoints behind (a run there starts from step 0)."""
    path = Path(result_file).resolve()
    key = f"{results_folder_id(path.parents[5])}\n{path}"
    return cache_dir() / "runs" / hashlib.sha256(key.encode()).hexdigest()[:16]
