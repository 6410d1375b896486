"""`bench leaderboard`: LEADERBOARD.md, CSV and LaTeX tables, and the HTML page, from result files.

Default outputs follow the results folder (bench.paths.report_outputs): the committed LEADERBOARD.md
and reports/ for the project's results/, `<results folder>-reports/` for any other folder.
"""

from __future__ import annotations

from pathlib import Path

from bench.commands._args import add_results_dir

NAME = "leaderboard"
HELP = ("regenerate LEADERBOARD.md, reports/tables/ and reports/index.html from results/ (another results "
        "folder DIR: DIR-reports/)")


def add_arguments(p) -> None:
    add_results_dir(p)
    p.add_argument("--out", type=Path, help="Markdown leaderboard (default: LEADERBOARD.md at the project root "
                                            "for results/, DIR-reports/LEADERBOARD.md for another folder DIR)")
    p.add_argument("--tables-dir", type=Path, help="CSV and LaTeX tables (default: reports/tables, or DIR-reports/tables)")
    p.add_argument("--html", type=Path, help="HTML page (default: reports/index.html, or DIR-reports/index.html)")
    p.add_argument("--no-html", action="store_true", help="skip the HTML page (it renders every figure)")
    p.add_argument("--figures-dir", type=Path, help="where `bench figures` writes, for links (default: "
                                                     "reports/figures, or DIR-reports/figures)")
    p.add_argument("--figures-link", help="link prefix for figures in the Markdown (default: relative path)")
    p.add_argument("--reported", type=Path, help="reported numbers (default: reference/reported.yaml)")
    p.add_argument("--exclude-invalid", action="store_true",
                   help="write the report anyway, listing unusable result files as excluded")


def run(args, log) -> int:
    from bench.paths import existing_results_dir, report_outputs

    results = existing_results_dir(args.results_dir)  # before any work, imports included
    default = report_outputs(results)
    from bench.report.build import Outputs, build_leaderboard

    out = Outputs(markdown=args.out or default["markdown"],
                  tables_dir=args.tables_dir or default["tables"],
                  html=None if args.no_html else (args.html or default["html"]),
                  figures_dir=args.figures_dir or default["figures"],
                  figures_link=args.figures_link)
    build_leaderboard(results, out, exclude_invalid=args.exclude_invalid, reported_path=args.reported, log=log)
    return 0
