"""`bench verify [PATHS] [--since REF]`: re-run result files and compare them exactly (bench/verify.py)."""

from __future__ import annotations

from pathlib import Path

from bench.commands._args import add_results_dir
from bench.errors import BenchError

NAME = "verify"
HELP = "re-run tiny-profile result files and compare weights, samples and metrics exactly"


def add_arguments(p) -> None:
    p.add_argument("paths", nargs="*", type=Path, help="result files or folders (default: changed since --since)")
    p.add_argument("--since", default="HEAD", help="git ref: verify the result files added or changed since it")
    add_results_dir(p, "with --since: the results folder to look in (default: $BENCH_RESULTS or ./results)")


def _not_a_result(path: Path) -> str | None:
    """Why `path` is not a run result file, or None."""
    import json

    try:
        data = json.loads(path.read_text())
    except UnicodeDecodeError:
        return "not text"
    except ValueError as err:
        return f"not JSON: {err.args[0] if err.args else err}"
    except OSError as err:
        return f"unreadable: {err.strerror}"
    if not isinstance(data, dict):
        return "not a JSON object"
    missing = [k for k in ("run_identity", "task", "profile", "method", "dataset", "seed") if k not in data]
    if missing:
        return f"no {', '.join(repr(k) for k in missing[:3])} field{'s' if len(missing) > 1 else ''}" + (
            "; an analysis file" if "analysis" in data else "")
    return None


def run(args, log) -> int:
    from bench.paths import results_dir
    from bench.verify import _is_run, changed_result_files, verify_file

    if args.results_dir is not None:
        import os

        os.environ["BENCH_RESULTS"] = args.results_dir

    files: list[Path] = []
    for p in args.paths:  # every path is checked before any re-run
        if not p.exists():
            raise BenchError(f"no such result file or folder: {p}")
        if p.is_dir():
            found = [f for f in sorted(p.rglob("*.json")) if _is_run(f)]  # analysis files are not runs
            if not found:
                raise BenchError(f"no result files under {p} (bench verify takes run result files, seed<k>.json)")
            files += found
        else:
            why = _not_a_result(p)
            if why:
                raise BenchError(f"{p} is not a run result file ({why}); bench verify takes seed<k>.json files "
                                 f"that bench run wrote")
            files.append(p)
    if not args.paths:
        files = changed_result_files(args.since, results_dir())
        if not files:
            log(f"no result files changed since {args.since}")
            return 0
    failed = 0
    for path in files:
        status, detail = verify_file(path)
        log(f"{status:<9} {path}: {detail}")
        failed += status == "FAIL"
    log(f"{len(files) - failed} of {len(files)} verified" + (f", {failed} FAILED" if failed else ""))
    return 1 if failed else 0
