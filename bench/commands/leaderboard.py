"""`bench leaderboard`: LEADERBOARD.md, CSV and LaTeX tables, and the HTML page, from results/."""

from __future__ import annotations

from pathlib import Path

NAME = "leaderboard"
HELP = "regenerate LEADERBOARD.md, reports/tables/ and reports/index.html from result files"


def add_arguments(p) -> None:
    p.add_argument("--results", type=Path, help="results folder (default: $BENCH_RESULTS or ./results)")
    p.add_argument("--out", type=Path, help="Markdown leaderboard (default: LEADERBOARD.md at the project root)")
    p.add_argument("--tables-dir", type=Path, help="CSV and LaTeX tables (default: reports/tables)")
    p.add_argument("--html", type=Path, help="HTML page (default: reports/index.html)")
    p.add_argument("--no-html", action="store_true", help="skip the HTML page (it renders every figure)")
    p.add_argument("--figures-dir", type=Path, help="where `bench figures` writes, for links (default: reports/figures)")
    p.add_argument("--figures-link", help="link prefix for figures in the Markdown (default: relative path)")
    p.add_argument("--reported", type=Path, help="reported numbers (default: reference/reported.yaml)")
    p.add_argument("--exclude-invalid", action="store_true",
                   help="write the report anyway, listing unusable result files as excluded")


def run(args, log) -> int:
    from bench.paths import project_root, results_dir
    from bench.report.build import Outputs, build_leaderboard

    root = project_root()
    out = Outputs(markdown=args.out or root / "LEADERBOARD.md",
                  tables_dir=args.tables_dir or root / "reports" / "tables",
                  html=None if args.no_html else (args.html or root / "reports" / "index.html"),
                  figures_dir=args.figures_dir or root / "reports" / "figures",
                  figures_link=args.figures_link)
    build_leaderboard(args.results or results_dir(), out, exclude_invalid=args.exclude_invalid,
                      reported_path=args.reported, log=log)
    return 0
