"""`bench verify [PATHS] [--since REF]`: re-run result files and compare them exactly (bench/verify.py)."""

from __future__ import annotations

from pathlib import Path

from bench.errors import BenchError

NAME = "verify"
HELP = "re-run tiny-profile result files and compare weights, samples and metrics exactly"


def add_arguments(p) -> None:
    p.add_argument("paths", nargs="*", type=Path, help="result files or folders (default: changed since --since)")
    p.add_argument("--since", default="HEAD", help="git ref: verify the result files added or changed since it")


def run(args, log) -> int:
    from bench.paths import results_dir
    from bench.verify import changed_result_files, verify_file

    files: list[Path] = []
    for p in args.paths:
        if not p.exists():
            raise BenchError(f"no such result file or folder: {p}")
        files += sorted(p.rglob("*.json")) if p.is_dir() else [p]
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
