"""The quality-cost frontier per task: the final metric against what a method costs.

Costs are what every result file records: trainable parameters (`training.trainable_params`; a
checkpoint holds exactly these, so its size is proportional), the process's peak memory
(`provenance.peak_memory_mb`) and training time (`provenance.timings_s.train_s`, sampling and
scoring left out: they are the same for every method). Each point is one method configuration on
one dataset: the metric's mean over seeds with its 95% Student-t interval, and the same for the
measured costs (trainable parameters do not vary). A point is on the Pareto front of a cost when
no other point of the panel is at most as costly and at most as bad, and strictly better in one
(means compared; lower metric is better). Time and memory are measured on whatever machine ran
each result (`provenance.device`), so they compare runs made on the same kind of machine.

Only the main runs at the task's own budget enter (not --steps runs, not variants or smoke runs),
in the sections whose family has no study report of its own (or whose study keeps the generic
`frontier` figure).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.report.aggregate import METRICS, MetricInfo
from bench.report.extras import SimpleTable
from bench.report.load import Loaded, ResultSet, section_key_str
from bench.stats import Interval, t_interval

COSTS = {  # key -> (axis label, column header, value of a RunResult or None)
    "params": ("trainable parameters", "Trainable params", lambda r: float(r.training.trainable_params)),
    "memory": ("peak memory (MB)", "Peak memory (MB)", lambda r: _number(r.provenance.get("peak_memory_mb"))),
    "time": ("training time (s)", "Train time (s)",
             lambda r: _number((r.provenance.get("timings_s") or {}).get("train_s"))),
}


def _number(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


@dataclass
class Point:
    method: str
    config_hash: str
    label: str  # as the figures' legends name a configuration
    dataset: str
    metric: Interval
    costs: dict[str, Interval | None]  # cost key -> interval over seeds (None: not recorded)
    on_front: dict[str, bool]


@dataclass
class Frontier:
    section: tuple[str, int, str]
    metric: MetricInfo
    datasets: list[str]
    points: list[Point]

    @property
    def slug(self) -> str:
        task, version, profile = self.section
        return f"{task}-v{version}-{profile}-frontier"


def _pareto(points: list[Point], cost: str) -> None:
    have = [p for p in points if p.costs[cost] is not None]
    for p in points:
        p.on_front[cost] = p in have and not any(
            q is not p and q.costs[cost].mean <= p.costs[cost].mean and q.metric.mean <= p.metric.mean
            and (q.costs[cost].mean < p.costs[cost].mean or q.metric.mean < p.metric.mean) for q in have)


def _sections(rs: ResultSet) -> list[tuple[str, int, str]]:
    from bench.report.study import study_reports

    studies = {st.family: st for st in study_reports()}
    out = set()
    for r in rs.runs:
        study = studies.get(r.data.family)
        if study is None or "frontier" in study.generic_figures:
            out.add(r.section)
    return sorted(out)


def frontier(section: tuple[str, int, str], runs: list[Loaded]) -> Frontier | None:
    """The frontier of a section's main runs (None: fewer than two method configurations), on the
    section's first metric (the leaderboard's first table: FID where recorded)."""
    from bench.report.aggregate import _dataset_order
    from bench.report.plotting import run_label

    runs = [r for r in runs if r.section == section and not r.data.budget_override]
    metric = next((m for m in METRICS.values() if any(m.value(r.data) is not None for r in runs)), None)
    runs = [r for r in runs if metric is not None and metric.value(r.data) is not None]
    if len({(r.data.method, r.data.config_hash) for r in runs}) < 2:
        return None
    order = _dataset_order(runs)
    datasets = [d for d in order if any(r.data.dataset == d for r in runs)]
    datasets += sorted({r.data.dataset for r in runs} - set(datasets))
    groups: dict[tuple[str, str, str], list] = {}
    for r in runs:
        groups.setdefault((r.data.dataset, r.data.method, r.data.config_hash), []).append(r.data)
    points = []
    for (ds, method, cfg), group in groups.items():
        group.sort(key=lambda d: d.seed)
        costs = {}
        for key, (_, _, value) in COSTS.items():
            vals = [value(d) for d in group]
            costs[key] = t_interval(vals) if all(v is not None for v in vals) else None
        points.append(Point(method, cfg, run_label(group[0]), ds, t_interval([metric.value(d) for d in group]),
                            costs, {}))
    for ds in datasets:
        panel = [p for p in points if p.dataset == ds]
        for key in COSTS:
            _pareto(panel, key)
    points.sort(key=lambda p: (datasets.index(p.dataset), p.metric.mean, p.label))
    return Frontier(section, metric, datasets, points)


def frontiers(rs: ResultSet) -> list[Frontier]:
    out = [frontier(section, rs.runs) for section in _sections(rs)]
    return [f for f in out if f is not None]


# -- table ------------------------------------------------------------------------------------------

def _ci(iv: Interval | None, digits: int) -> str:
    if iv is None:
        return "—"
    if iv.n >= 2 and math.isfinite(iv.half_width):
        return f"{iv.mean:.{digits}f} ± {iv.half_width:.{digits}f}"
    return f"{iv.mean:.{digits}f}"


def _g(x: float) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.10g}"  # parameter counts stay exact


FRONT_MARK = {"params": "P", "memory": "M", "time": "T"}


def frontier_table(f: Frontier) -> SimpleTable:
    rows, csv_rows = [], []
    for p in f.points:
        front = " ".join(FRONT_MARK[k] for k in COSTS if p.on_front.get(k)) or "—"
        rows.append([p.method, p.config_hash[:12], p.dataset, f"{_ci(p.metric, f.metric.digits)} (n={p.metric.n})",
                     f"{int(p.costs['params'].mean):,}", _ci(p.costs["memory"], 0), _ci(p.costs["time"], 1), front])
        csv_rows.append([*f.section, p.method, p.config_hash, p.dataset, f.metric.key, _g(p.metric.mean),
                         _g(p.metric.low), _g(p.metric.high), p.metric.n,
                         *(x for k in COSTS for x in ((_g(p.costs[k].mean), _g(p.costs[k].low), _g(p.costs[k].high))
                                                      if p.costs[k] is not None else ("", "", ""))),
                         *(int(bool(p.on_front.get(k))) for k in COSTS)])
    return SimpleTable(
        section_key_str(f.section), f.slug,
        f"Quality-cost frontier: {f.metric.title} against trainable parameters, peak memory and training time "
        f"(front: on the Pareto front of P parameters, M memory, T time)",
        ["Method", "Config", "Dataset", f"{f.metric.title} (95% CI)", "Trainable params", "Peak memory (MB)",
         "Train time (s)", "Front"], rows,
        ["task", "task_version", "profile", "method", "config_hash", "dataset", "metric", "mean", "ci95_low",
         "ci95_high", "n", *(f"{k}_{s}" for k in COSTS for s in ("mean", "ci95_low", "ci95_high")),
         *(f"front_{k}" for k in COSTS)], csv_rows)


def frontier_tables(rs: ResultSet) -> list[SimpleTable]:
    return [frontier_table(f) for f in frontiers(rs)]


# -- figure -----------------------------------------------------------------------------------------

def frontier_figure(section, runs: list[Loaded], datasets: list[str] | None = None):
    """The frontier figure of a section (bench/report/figures.py calls it like its own figures):
    a row of panels per dataset, a column per recorded cost; None without a frontier."""
    from bench.report.plotting import FigureSpec, slug

    f = frontier(section, runs)
    if f is None:
        return None
    return FigureSpec(f"{slug(section)}-frontier", section_key_str(section),
                      f"Quality-cost frontier: {f.metric.title} against trainable parameters, peak memory and "
                      f"training time (Pareto front outlined)", lambda: _draw(f))


def _draw(f: Frontier):
    import matplotlib.pyplot as plt

    from bench.report.colours import styles
    from bench.report.plotting import legend

    style = styles({p.label: p.method for p in f.points})
    costs = [k for k in COSTS if any(p.costs[k] is not None for p in f.points)]
    fig, axes = plt.subplots(len(f.datasets), len(costs), figsize=(2.9 * len(costs), 2.2 * len(f.datasets) + 1.2),
                             squeeze=False)
    for i, ds in enumerate(f.datasets):
        panel = [p for p in f.points if p.dataset == ds]
        for j, key in enumerate(costs):
            ax = axes[i][j]
            for p in panel:
                c = p.costs[key]
                if c is None:
                    continue
                st = style[p.label]
                xerr = c.half_width if c.n >= 2 and math.isfinite(c.half_width) else 0.0
                yerr = p.metric.half_width if p.metric.n >= 2 and math.isfinite(p.metric.half_width) else 0.0
                ax.errorbar([c.mean], [p.metric.mean], xerr=[[xerr], [xerr]], yerr=[[yerr], [yerr]], fmt=st.marker,
                            color=st.colour, capsize=2, ms=5, label=f"{p.label} (n={p.metric.n})",
                            markeredgecolor="black" if p.on_front.get(key) else st.colour,
                            markeredgewidth=1.2 if p.on_front.get(key) else 0.5)
            front = sorted((p.costs[key].mean, p.metric.mean) for p in panel if p.on_front.get(key))
            if len(front) >= 2:
                ax.step([x for x, _ in front], [y for _, y in front], where="post", color="black", lw=0.8, ls="--",
                        zorder=0)
            if key == "params":
                ax.set_xscale("log")
            ax.set_xlabel(COSTS[key][0])
            ax.set_ylabel(f.metric.title if j == 0 else "")
            ax.set_title(f"{ds}: {f.metric.title} vs {key}")
    legend(fig, [ax for row in axes for ax in row])
    fig.suptitle(f"Quality-cost frontier (Pareto front: outlined markers, dashed) — {section_key_str(f.section)}")
    return fig
