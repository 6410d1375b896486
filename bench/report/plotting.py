"""Plotting primitives that every report figure shares, the generic ones (bench/report/figures.py)
and each family's own (bench/families/<name>/report.py): the figure record, panel grids, mean
curves with 95% t bands over seeds, one legend for all panels, and image strips. This module
imports no study and no family, so a family's report builds on it without a cycle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats as sstats  # noqa: E402

from bench.report.colours import Style  # noqa: E402
from bench.report.load import section_key_str  # noqa: E402,F401  (the section label every figure uses)


@dataclass(frozen=True)
class FigureSpec:
    name: str  # file stem
    section: str  # "task@vN/profile"
    title: str
    draw: Callable[[], plt.Figure]
    note: str = ""


def slug(section: tuple[str, int, str]) -> str:
    task, version, profile = section
    return f"{task}-v{version}-{profile}"


def run_label(r) -> str:
    return f"{r.method} [{r.config_hash[:6]}]" + (f" steps={r.budget['steps']}" if getattr(r, "budget_override", False)
                                                  else "")


def grid(n: int, min_width: float = 0.0) -> tuple[plt.Figure, list]:
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(3.0 * cols, min_width), 2.5 * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def mean_band(series: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and 95% t band over seeds at each x (band collapses to the mean for a single seed)."""
    y = np.vstack(series)
    mean = y.mean(axis=0)
    if len(series) < 2:
        return mean, mean, mean
    half = sstats.t.ppf(0.975, df=len(series) - 1) * y.std(axis=0, ddof=1) / np.sqrt(len(series))
    return mean, mean - half, mean + half


def curves_panel(ax, groups: dict[str, list[tuple[np.ndarray, np.ndarray]]], style: dict[str, Style]) -> None:
    for lab in sorted(groups):
        curves = groups[lab]
        common = sorted(set.intersection(*(set(x.tolist()) for x, _ in curves)))
        if not common:
            continue
        xs = np.asarray(common)
        ys = [np.interp(xs, x, y) for x, y in curves]
        mean, lo, hi = mean_band(ys)
        st = style[lab]
        ax.plot(xs, mean, color=st.colour, ls=st.linestyle, lw=1.2, label=f"{lab} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(xs, lo, hi, color=st.colour, alpha=0.2, lw=0)


def legend(fig, axes) -> None:
    """One legend for all panels; an entry labelled "<name> (n=k)" shows the range of n over panels."""
    handles, labels, ns = {}, [], {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            key, sep, n = lab.rpartition(" (n=")
            key, n = (key, n) if sep else (lab, "")
            if key not in handles:
                handles[key] = h
                labels.append(key)
            if n:
                ns.setdefault(key, set()).update(n.rstrip(")").split("–"))
    if handles:
        texts = [k + (f" (n={_span(ns[k])})" if k in ns else "") for k in labels]
        width, height = fig.get_size_inches()
        entry = 0.6 + 0.055 * max(len(t) for t in texts)  # inches, at the legend's font size
        ncol = max(1, min(4, len(texts), int(width // entry)))
        rows = math.ceil(len(texts) / ncol)
        fig.legend([handles[k] for k in labels], texts, loc="lower center", ncol=ncol,
                   frameon=False, bbox_to_anchor=(0.5, 0.0))
        fig.tight_layout(rect=(0, max(0.08, (0.05 + 0.17 * rows) / height), 1, 0.95))
    else:
        fig.tight_layout(rect=(0, 0, 1, 0.95))


def _span(ns: set[str]) -> str:
    vals = sorted(int(n) for n in ns if n.isdigit())
    if not vals:
        return "/".join(sorted(ns))
    return str(vals[0]) if vals[0] == vals[-1] else f"{vals[0]}–{vals[-1]}"


def strip_columns(cols: list[tuple[str, list, set]], title: str):
    """Sample strips stored with tracked curves (`tracking.artifacts.strip`): one column per
    (title, [[step, png], ...], framed steps), one row per checkpoint; framed rows in red."""
    from bench.tracking import decode_png_strip

    rows = max((len(s) for _, s, _ in cols), default=0)
    fig, axes = plt.subplots(max(rows, 1), max(len(cols), 1), squeeze=False,
                             figsize=(max(3.4 * len(cols), 7.0), 0.8 * max(rows, 1) + 0.8))
    for j, (head, strips, framed) in enumerate(cols):
        for i in range(rows):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if i >= len(strips):
                ax.set_visible(False)
                continue
            step, text = strips[i]
            ax.imshow(decode_png_strip(text), interpolation="nearest")
            ax.set_ylabel(f"{step}", rotation=0, ha="right", va="center", fontsize=7)
            if step in framed:
                for spine in ax.spines.values():
                    spine.set_edgecolor("red")
                    spine.set_linewidth(2.5)
        axes[0][j].set_title(head, fontsize=8)
    fig.suptitle(title, fontsize=9)
    return fig
