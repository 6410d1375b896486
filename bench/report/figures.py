"""The papers' figures, regenerated from result files (matplotlib, Agg backend, PNG + PDF).

Per (task@version, profile): EWC per method (Diff-Tuning Fig. 4b/c), FID against the fraction of
trainable parameters (the efficiency trade-off), the quality-cost frontier (bench/report/frontier.py),
and the chain of forgetting (Diff-Tuning Fig. 1)
from `bench analyze chain-of-forgetting` files, all from the main runs (the task as written); and
Diff-Tuning's analysis figures from the main runs and their variants (bench/report/
analysis_figures.py): convergence (tracked FID against training steps), the retention /
reconsolidation ablation, and one figure per swept key. Each panel is one dataset: averaging over
datasets would mix rows that cover different datasets. Bands and error bars are 95% Student-t
intervals over seeds, with n (seeds) in the legend.

Files are written without dates or software versions in their metadata, so regenerating from the
same results with the same matplotlib gives the same bytes.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bench.report.aggregate import _dataset_order  # noqa: E402
from bench.report.colours import styles  # noqa: E402
from bench.report.frontier import frontier_figure  # noqa: E402
from bench.report.load import Loaded, ResultSet, section_key_str  # noqa: E402
from bench.report.plotting import FigureSpec, curves_panel, grid, legend, run_label, slug  # noqa: E402
from bench.stats import t_interval  # noqa: E402

PNG_META = {"Software": None}
PDF_META = {"Creator": None, "Producer": None, "CreationDate": None}
STYLE = {"figure.dpi": 100, "savefig.dpi": 150, "font.size": 8, "axes.titlesize": 9, "legend.fontsize": 7,
         "svg.hashsalt": "bench", "pdf.compression": 6}


def _ewc(section, runs: list[Loaded], datasets: list[str]) -> FigureSpec | None:
    runs = [r for r in runs if r.data.metrics.ewc is not None]
    if not runs:
        return None

    def draw():
        present = [d for d in datasets if any(r.data.dataset == d for r in runs)]
        style = styles({run_label(r.data): r.data.method for r in runs})
        labels = sorted(style)
        # One panel above the other, width bounded: a bar per (dataset, method) stays readable.
        width_in = min(16.0, max(6.0, 0.18 * len(present) * len(labels) + 2.0))
        fig, (ax_t, ax_m) = plt.subplots(2, 1, figsize=(width_in, 6.0), sharex=True)
        width = 0.8 / len(labels)
        for which, ax in (("total", ax_t), ("mean", ax_m)):
            for j, lab in enumerate(labels):
                xs, ms, errs = [], [], []
                for i, ds in enumerate(present):
                    vals = [getattr(r.data.metrics.ewc, which) for r in runs
                            if r.data.dataset == ds and run_label(r.data) == lab]
                    if vals:
                        iv = t_interval(vals)
                        xs.append(i + (j - (len(labels) - 1) / 2) * width)
                        ms.append(iv.mean)
                        errs.append(iv.half_width if iv.n >= 2 else 0.0)
                st = style[lab]
                ax.bar(xs, ms, width, yerr=errs, color=st.colour, hatch=st.hatch, edgecolor="white", lw=0,
                       label=lab, capsize=2)
            ax.set_xticks(range(len(present)), present, rotation=30, ha="right")
            ax.set_title("total EWC" if which == "total" else "mean EWC over tunable parameters")
            ax.set_ylabel("Σ F (θ − θ_pre)²" if which == "total" else "mean F (θ − θ_pre)²")
        legend(fig, [ax_t])
        fig.suptitle(f"EWC (forgetting) per method — {section_key_str(section)}")
        return fig

    return FigureSpec(f"{slug(section)}-ewc", section_key_str(section), "EWC per method (total and mean)", draw)


def _efficiency(section, runs: list[Loaded], datasets: list[str]) -> FigureSpec | None:
    runs = [r for r in runs if r.data.metrics.fid is not None and r.data.training.total_params]
    if not runs:
        return None

    def draw():
        present = [d for d in datasets if any(r.data.dataset == d for r in runs)]
        style = styles({run_label(r.data): r.data.method for r in runs})
        labels = sorted(style)
        fig, axes = grid(len(present))
        for ax, ds in zip(axes, present):
            for lab in labels:
                sel = [r.data for r in runs if r.data.dataset == ds and run_label(r.data) == lab]
                if not sel:
                    continue
                iv = t_interval([d.metrics.fid for d in sel])
                frac = sel[0].training.trainable_params / sel[0].training.total_params
                ax.errorbar([frac * 100], [iv.mean], yerr=[[iv.half_width if iv.n >= 2 else 0.0]] * 2,
                            fmt=style[lab].marker, color=style[lab].colour, capsize=2, label=f"{lab} (n={iv.n})")
            ax.set_xscale("log")
            ax.set_xlim(right=200)  # fractions never exceed 100%
            ax.set_title(ds)
            ax.set_xlabel("trainable parameters (% of model)")
            ax.set_ylabel("FID")
        legend(fig, axes)
        fig.suptitle(f"FID against trainable-parameter fraction — {section_key_str(section)}")
        return fig

    return FigureSpec(f"{slug(section)}-efficiency", section_key_str(section),
                      "FID against trainable-parameter fraction", draw)


def _chain(section, analyses: list[Loaded], datasets: list[str]) -> FigureSpec | None:
    if not analyses:
        return None

    def draw():
        present = [d for d in datasets if any(a.data.dataset == d for a in analyses)]
        present += sorted({a.data.dataset for a in analyses} - set(present))
        style = styles({run_label(a.data): a.data.method for a in analyses})
        fig, axes = grid(len(present))
        for ax, ds in zip(axes, present):
            groups: dict[str, list] = {}
            for a in analyses:
                if a.data.dataset == ds:
                    pts = sorted((p.fraction, p.fid) for p in a.data.points)
                    groups.setdefault(run_label(a.data), []).append(
                        (np.array([p[0] for p in pts]) * 100, np.array([p[1] for p in pts])))
            curves_panel(ax, groups, style)
            ax.set_title(ds)
            ax.set_xlabel("% steps by pre-trained (data end)")
            ax.set_ylabel("FID")
        legend(fig, axes)
        fig.suptitle(f"Chain of forgetting — {section_key_str(section)}")
        return fig

    return FigureSpec(f"{slug(section)}-chain-of-forgetting", section_key_str(section),
                      "Chain of forgetting: FID as the pre-trained denoiser takes over steps from the data end", draw)


def _eps_mse(section, analyses: list[Loaded], datasets: list[str]) -> FigureSpec | None:
    if not analyses:
        return None

    def draw():
        present = [d for d in datasets if any(a.data.dataset == d for a in analyses)]
        present += sorted({a.data.dataset for a in analyses} - set(present))
        style = styles({run_label(a.data): a.data.method for a in analyses})
        fig, axes = grid(len(present))
        for ax, ds in zip(axes, present):
            groups: dict[str, list] = {}
            for a in analyses:
                if a.data.dataset == ds:
                    pts = sorted((p.t, p.relative) for p in a.data.points if p.relative is not None)
                    groups.setdefault(run_label(a.data), []).append(
                        (np.array([p[0] for p in pts]), np.array([p[1] for p in pts])))
            curves_panel(ax, groups, style)
            ax.axhline(1.0, color="0.5", lw=0.8, ls=":")
            ax.set_title(ds)
            ax.set_xlabel("timestep t (0 = data end)")
            ax.set_ylabel("eps-MSE / pre-trained")
        legend(fig, axes)
        fig.suptitle(f"Epsilon MSE relative to the pre-trained model — {section_key_str(section)}")
        return fig

    return FigureSpec(f"{slug(section)}-eps-mse", section_key_str(section),
                      "Epsilon MSE relative to the pre-trained model against the timestep (95% band over seeds)", draw)


SKIP_REASONS = {"ewc": "no result carries metrics.ewc",
                "frontier": "fewer than two method configurations at the task's budget",
                "chain-of-forgetting": "no `bench analyze chain-of-forgetting` results",
                "eps-mse": "no `bench analyze eps-mse` results"}


def _sections(rs: ResultSet) -> list[tuple[str, int, str]]:
    return sorted({r.section for r in rs.runs + rs.variants} | {a.section for a in rs.analyses})


def _datasets(items: list[Loaded]) -> list[str]:
    order = _dataset_order(items)
    return order + sorted({i.data.dataset for i in items} - set(order))


def plan_figures(rs: ResultSet) -> tuple[list[FigureSpec], list[str]]:
    """Every figure the results support (nothing rendered yet), and a note for each one skipped.
    Tables' figures read the main runs only; the analysis figures read their variants too. A
    section of a family with its own report (bench/report/study.py) draws the generic figures that
    report keeps, then its own."""
    from bench.report import analysis_figures as af
    from bench.report.study import GENERIC_FIGURES, study_reports

    studies = {st.family: st for st in study_reports()}
    specs, notes = [], []
    skip = {**SKIP_REASONS, "convergence": af.NO_TRACKING, "ablation": af.NO_ABLATION}
    for section in _sections(rs):
        runs = [r for r in rs.runs if r.section == section]
        variants = [r for r in rs.variants if r.section == section]
        analyses = [a for a in rs.analyses if a.section == section]
        chain = [a for a in analyses if a.data.analysis == "chain-of-forgetting"]
        eps = [a for a in analyses if a.data.analysis == "eps-mse"]
        datasets = _datasets(runs + variants + analyses)
        study = next((studies[r.data.family] for r in runs + variants if r.data.family in studies), None)
        kinds = study.generic_figures if study is not None else GENERIC_FIGURES
        for kind, make, items in (("convergence", af.convergence, runs + variants), ("ewc", _ewc, runs),
                                  ("efficiency", _efficiency, runs), ("frontier", frontier_figure, runs),
                                  ("ablation", af.ablation, runs + variants),
                                  ("chain-of-forgetting", _chain, chain), ("eps-mse", _eps_mse, eps)):
            if kind not in kinds:
                continue
            spec = make(section, items, datasets) if items else None
            if spec is None:
                notes.append(f"skipped {kind} figure for {section_key_str(section)}: {skip.get(kind, 'no data')}")
            else:
                specs.append(spec)
        if study is not None:
            specs += study.figures(section, runs + variants, rs)
        if "sweeps" in kinds:
            swept = af.sweeps(section, runs, variants, datasets)
            specs += swept
            if not swept:
                notes.append(f"skipped sweep figures for {section_key_str(section)}: {af.NO_SWEEP}")
    return specs, notes


def render(spec: FigureSpec, fmt: str) -> bytes:
    with plt.rc_context(STYLE):
        fig = spec.draw()
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, metadata=PNG_META if fmt == "png" else PDF_META)
        plt.close(fig)
    return buf.getvalue()


def write_figures(specs: list[FigureSpec], out_dir: Path, formats=("png", "pdf")) -> list[Path]:
    from bench.report.leaderboard import write_bytes

    written = []
    for spec in specs:
        for fmt in formats:
            path = Path(out_dir) / f"{spec.name}.{fmt}"
            write_bytes(path, render(spec, fmt))
            written.append(path)
    return written
