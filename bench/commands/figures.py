"""`bench figures`: the papers' figures (PNG and PDF) regenerated from result files."""

from __future__ import annotations

from pathlib import Path

NAME = "figures"
HELP = ("regenerate figures (tracked-FID convergence, EWC, efficiency, chain of forgetting, Diff-Tuning "
        "ablation and sweeps) as PNG and PDF from results")


def add_arguments(p) -> None:
    p.add_argument("--results", type=Path, help="results folder (default: $BENCH_RESULTS or ./results)")
    p.add_argument("--out-dir", type=Path, help="output folder (default: reports/figures)")
    p.add_argument("--format", dest="formats", action="append", choices=["png", "pdf"],
                   help="file format(s); default: png and pdf")
    p.add_argument("--exclude-invalid", action="store_true", help="skip unusable result files, naming each")


def run(args, log) -> int:
    from bench.paths import project_root, results_dir
    from bench.report.build import build_figures

    build_figures(args.results or results_dir(), args.out_dir or project_root() / "reports" / "figures",
                  exclude_invalid=args.exclude_invalid, formats=tuple(args.formats or ("png", "pdf")), log=log)
    return 0
