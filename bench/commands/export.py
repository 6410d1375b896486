"""`bench export`: every usable run result as one row of a Parquet table (pandas, pyarrow, datasets)."""

from __future__ import annotations

from pathlib import Path

from bench.commands._args import add_results_dir

NAME = "export"
HELP = ("write every usable result file as one row of a Parquet table (default: reports/results.parquet for "
        "results/, DIR-reports/results.parquet for another results folder DIR)")


def add_arguments(p) -> None:
    add_results_dir(p)
    p.add_argument("--out", type=Path, metavar="PATH", help="Parquet file to write (default: reports/results.parquet, "
                                                            "or DIR-reports/results.parquet)")


def run(args, log) -> int:
    from bench.paths import existing_results_dir, report_outputs

    results = existing_results_dir(args.results_dir)  # before any work, imports included
    from bench.report.export import export_results
    export_results(results, args.out or report_outputs(results)["parquet"], log=log)
    return 0
