"""`bench figures`: the papers' figures (PNG and PDF) regenerated from result files."""

from __future__ import annotations

from pathlib import Path

from bench.commands._args import add_results_dir

NAME = "figures"
HELP = ("regenerate figures (tracked-FID convergence, EWC, efficiency, chain of forgetting, Diff-Tuning "
        "ablation and sweeps) as PNG and PDF from results")


def add_arguments(p) -> None:
    add_results_dir(p)
    p.add_argument("--out-dir", type=Path, help="output folder (default: reports/figures for results/, "
                                                "DIR-reports/figures for another results folder DIR)")
    p.add_argument("--format", dest="formats", action="append", choices=["png", "pdf"],
                   help="file format(s); default: png and pdf")
    p.add_argument("--exclude-invalid", action="store_true", help="skip unusable result files, naming each")


def run(args, log) -> int:
    from bench.paths import existing_results_dir, report_outputs

    results = existing_results_dir(args.results_dir)  # before any work, imports included
    from bench.report.build import build_figures
    build_figures(results, args.out_dir or report_outputs(results)["figures"],
                  exclude_invalid=args.exclude_invalid, formats=tuple(args.formats or ("png", "pdf")), log=log)
    return 0
