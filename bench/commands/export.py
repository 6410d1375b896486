"""`bench export`: every usable run result as one row of a Parquet table (pandas, pyarrow, datasets)."""

from __future__ import annotations

from pathlib import Path

NAME = "export"
HELP = "write every usable result file as one row of a Parquet table (default: reports/results.parquet)"


def add_arguments(p) -> None:
    # --results is the spelling of `bench leaderboard` and `bench figures`; --results-dir that of `bench run`.
    p.add_argument("--results-dir", "--results", dest="results", type=Path, metavar="DIR",
                   help="results folder (default: $BENCH_RESULTS or ./results)")
    p.add_argument("--out", type=Path, metavar="PATH", help="Parquet file to write (default: reports/results.parquet)")


def run(args, log) -> int:
    from bench.paths import project_root, results_dir
    from bench.report.export import export_results

    export_results(args.results or results_dir(), args.out or project_root() / "reports" / "results.parquet", log=log)
    return 0
