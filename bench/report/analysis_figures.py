"""Diff-Tuning's analysis figures (Zhong et al., Diffusion Tuning, NeurIPS 2024, Fig. 5a-d, 6a-b),
drawn from the main runs and their variants (sweep points, runs with task overrides):

- convergence (Fig. 5a; A3FT's cFID curves): the tracked metric (`tracking.curves`, FID or cFID;
  step 0 is the pre-trained model) against the training step, one line per method setting. Training losses are
  never shown instead: methods draw timesteps from different distributions, so their losses are
  not comparable;
- ablation (Fig. 5b): final FID of full fine-tuning, retention only (tau = 0, bank kept),
  reconsolidation only (bank_ratio = 0) and both (the default config), under the task as written;
- sweeps (Fig. 5c-d, 6a-b, and any other swept key): final FID against the swept value, the main
  run at its default value included, full fine-tuning as a reference line.

Runs are pooled only when everything but the plotted quantity is equal (method config, budget,
task overrides); task overrides under `tracking` only change what is measured during training, so
they are ignored when comparing settings, and a seed measured twice counts once. Bars, bands and
error bars are 95% Student-t intervals over seeds, with n (seeds) shown.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from bench.report.colours import Style, method_colour, styles
from bench.report.plotting import FigureSpec, curves_panel, grid, legend, slug
from bench.report.load import Loaded, section_key_str
from bench.spec import canonical_hash
from bench.tracking import measurement_only
from bench.stats import t_interval

NO_TRACKING = "no tracked FID (run with --track K)"
NO_ABLATION = "no diff-tuning ablation variants (tau = 0 or bank_ratio = 0)"
NO_SWEEP = "no sweep results"

MIN_WIDTH = 6.5  # inches: room for the title and legend when there are one or two panels
FULL_FT = "full-ft"
DIFF_TUNING = "diff-tuning"
ARMS = ("full-ft", "retention only", "reconsolidation only", "both", "oracle bank")
ORACLE = {"knowledge_bank.oracle": True}  # the one task override an ablation arm may carry (issue 30)
# Each arm in its method's colour; diff-tuning's two one-part arms are hatched variants of it.
ARM_STYLES = {"full-ft": Style(method_colour(FULL_FT), 0),
              "retention only": Style(method_colour(DIFF_TUNING), 1),
              "reconsolidation only": Style(method_colour(DIFF_TUNING), 2),
              "both": Style(method_colour(DIFF_TUNING), 0),
              "oracle bank": Style(method_colour(DIFF_TUNING), 3)}

METHOD_TITLES = {"diff-tuning": "Diff-Tuning", "full-ft": "Full fine-tuning"}
# swept key (a method config field, or a dotted task path) -> (title phrase, axis label)
SWEEP_TITLES = {
    "tau": ("sensitivity to tau (psi(t) exponent)", "tau (target timesteps drawn ∝ t^tau)"),
    "bank_tau": ("sensitivity to the knowledge-bank tau", "bank tau (bank timesteps drawn ∝ (T+1-t)^tau)"),
    "bank_ratio": ("sensitivity to the knowledge-bank share of a batch", "share of each batch from the bank"),
    "retention_weight": ("sensitivity to the retention loss weight", "retention loss weight"),
    "knowledge_bank.num_images": ("knowledge-bank size", "knowledge-bank size (images)"),
    "knowledge_bank.steps": ("sampling steps used to build the knowledge bank",
                             "sampling steps used to build the knowledge bank"),
}


# -- settings: what makes two runs comparable -------------------------------------------------------

def _overrides(d) -> dict[str, Any]:
    """The task overrides that change the trained model (not just what is tracked)."""
    return {k: v for k, v in d.task_overrides.items() if not measurement_only(k)}


def _is_main(d) -> bool:
    """The task as written (tracking aside), not a sweep point."""
    return not d.sweep and not _overrides(d)


def _setting(d, method_config: dict | None = None, overrides: dict | None = None) -> str:
    return canonical_hash({"method": d.method, "config": d.method_config if method_config is None else method_config,
                           "budget": d.budget, "overrides": _overrides(d) if overrides is None else overrides})


def _by_seed(runs: list[Loaded], value) -> dict[int, float]:
    """seed -> value, a seed counted once (the first run given wins: pass main runs first)."""
    out: dict[int, float] = {}
    for r in runs:
        v = value(r.data)
        if v is not None and r.data.seed not in out:
            out[r.data.seed] = float(v)
    return out


def _fid(d) -> float | None:
    return d.metrics.fid


def _half(iv) -> float:
    """Half-width of the 95% interval; NaN (no bar drawn) for a single seed, which has none."""
    return iv.half_width if iv.n >= 2 else float("nan")


def _setting_label(d) -> str:
    parts = [f"{k}={v}" for k, v in sorted(d.sweep.items())]
    parts += [f"{k}={v}" for k, v in sorted(_overrides(d).items()) if k not in d.sweep]
    if d.budget_override:
        parts.append(f"steps={d.budget['steps']}")
    return d.method + (f" ({', '.join(parts)})" if parts else "")


def _labels(runs: list[Loaded]) -> dict[str, str]:
    """setting -> legend label; settings that read alike get their hash appended."""
    labels = {}
    for r in runs:
        labels.setdefault(_setting(r.data), _setting_label(r.data))
    counts: dict[str, int] = {}
    for lab in labels.values():
        counts[lab] = counts.get(lab, 0) + 1
    return {s: lab if counts[lab] == 1 else f"{lab} [{s[:6]}]" for s, lab in labels.items()}


def _present(datasets: list[str], runs: list[Loaded]) -> list[str]:
    return [ds for ds in datasets if any(r.data.dataset == ds for r in runs)]


# -- convergence (Fig. 5a) ------------------------------------------------------------------------

def _tracked_metric(runs: list[Loaded]) -> str | None:
    """The tracked metric the convergence figure draws: FID, else cFID, else the first one tracked."""
    keys = list(dict.fromkeys(k for r in runs if r.data.tracking is not None for k in r.data.tracking.curves))
    return next((k for k in ("fid", "cfid") if k in keys), keys[0] if keys else None)


def _metric_title(key: str) -> str:
    from bench.report.aggregate import METRICS

    return METRICS[key].title.split(" (")[0] if key in METRICS else key


def _curve(d, key: str) -> list | None:
    return d.tracking.curves.get(key) if d.tracking is not None else None


def _tracked_ylabel(runs: list[Loaded], key: str) -> str:
    sizes = {r.data.tracking.num_samples for r in runs}
    name = _metric_title(key)
    return f"{name}, {sizes.pop()} samples (tracked)" if len(sizes) == 1 else f"{name} (tracked)"


def _convergence_groups(runs: list[Loaded], labels: dict[str, str], key: str) -> dict[str, list]:
    groups: dict[str, dict[int, tuple]] = {}
    for r in runs:
        arr = np.asarray(_curve(r.data, key), dtype=float)
        groups.setdefault(labels[_setting(r.data)], {}).setdefault(r.data.seed, (arr[:, 0], arr[:, 1]))
    return {lab: list(by_seed.values()) for lab, by_seed in groups.items()}


def convergence(section, runs: list[Loaded], datasets: list[str]) -> FigureSpec | None:
    """The tracked metric (FID, or e.g. cFID) against training steps, a panel per dataset with
    tracked runs (main runs first)."""
    key = _tracked_metric(runs)
    tracked = [r for r in runs if key is not None and _curve(r.data, key)]
    if not tracked:
        return None
    labels = _labels(tracked)
    present = _present(datasets, tracked)
    name = _metric_title(key)

    def draw():
        fig, axes = grid(len(present), MIN_WIDTH)
        style = styles({labels[_setting(r.data)]: r.data.method for r in tracked})
        for ax, ds in zip(axes, present):
            sel = [r for r in tracked if r.data.dataset == ds]
            curves_panel(ax, _convergence_groups(sel, labels, key), style)
            ax.set_title(ds)
            ax.set_xlabel("training step (0 = pre-trained)")
            ax.set_ylabel(_tracked_ylabel(sel, key))
        legend(fig, axes)
        fig.suptitle(f"Convergence: {name} during training — {section_key_str(section)}")
        return fig

    return FigureSpec(f"{slug(section)}-convergence", section_key_str(section),
                      f"Convergence: {name} tracked during training", draw)


# -- ablation (Fig. 5b) ---------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _diff_tuning_defaults() -> dict[str, Any]:
    from bench.registry import method_class

    return method_class(DIFF_TUNING).Config().model_dump(mode="json")


def _bank_tau(cfg: dict) -> float:
    return cfg["tau"] if cfg.get("bank_tau") is None else cfg["bank_tau"]


def ablation_arm(d) -> str | None:
    """Which bar of the ablation a run is (None: not part of it). Only the task as written with
    its own budget (diff-tuning may be a sweep point of its config: tau = 0 is a point of a tau
    sweep); diff-tuning's other config fields must be at their defaults. The one task change
    allowed is the oracle bank (the source's own training images as the bank): with Diff-Tuning's
    default config it is the "oracle bank" arm."""
    oracle = _overrides(d) == ORACLE
    if (_overrides(d) and not oracle) or d.budget_override:
        return None
    if oracle:
        if d.method != DIFF_TUNING or d.method_config != {**d.method_config, **_diff_tuning_defaults()}:
            return None
        return "oracle bank"
    if d.method == FULL_FT:
        return "full-ft" if _is_main(d) else None
    if d.method != DIFF_TUNING:
        return None
    cfg, default = d.method_config, _diff_tuning_defaults()
    if any(cfg.get(k) != v for k, v in default.items() if k not in ("tau", "bank_tau", "bank_ratio")):
        return None
    tau, ratio = cfg.get("tau"), cfg.get("bank_ratio")
    if tau is None or ratio is None:
        return None
    if ratio == 0 and tau > 0:
        return "reconsolidation only"
    if tau == 0 and ratio > 0 and _bank_tau(cfg) > 0:  # bank still drawn toward the data end
        return "retention only"
    if (tau, ratio, _bank_tau(cfg)) == (default["tau"], default["bank_ratio"], _bank_tau(default)):
        return "both"
    return None


def _arm_label(arm: str, d) -> str:
    if arm == "retention only":
        return f"retention\nonly (bank tau={_bank_tau(d.method_config):g})"
    return arm.replace(" only", "\nonly")


@dataclass(frozen=True)
class Bar:
    arm: str
    label: str
    seeds: dict[int, float]


def _ablation_bars(runs: list[Loaded], dataset: str) -> list[Bar]:
    groups: dict[tuple[str, str], list[Loaded]] = {}
    for r in runs:
        arm = ablation_arm(r.data) if r.data.dataset == dataset else None
        if arm is not None and r.data.metrics.fid is not None:
            groups.setdefault((arm, _setting(r.data)), []).append(r)
    per_arm: dict[str, int] = {}
    for arm, _ in groups:
        per_arm[arm] = per_arm.get(arm, 0) + 1
    bars = []
    for (arm, setting), sel in sorted(groups.items(), key=lambda kv: (ARMS.index(kv[0][0]), kv[0][1])):
        label = _arm_label(arm, sel[0].data) + (f" [{setting[:6]}]" if per_arm[arm] > 1 else "")
        bars.append(Bar(arm, label, _by_seed(sel, _fid)))
    return bars


def _tick(bar: Bar) -> str:
    """The bar's label, its parenthesised details and n on lines of their own."""
    n = len(bar.seeds)
    return "\n(".join(bar.label.split(" (")) + f"\n(n={n}{', no CI' if n < 2 else ''})"


def _ablation_panel(ax, bars: list[Bar], dataset: str) -> None:
    for i, bar in enumerate(bars):
        iv = t_interval(list(bar.seeds.values()))
        st = ARM_STYLES[bar.arm]
        ax.bar([i], [iv.mean], 0.7, yerr=[_half(iv)], color=st.colour, hatch=st.hatch, edgecolor="white", lw=0,
               capsize=3)
    ax.set_xticks(range(len(bars)), [_tick(b) for b in bars], fontsize=6)
    ax.set_title(dataset)
    ax.set_ylabel("FID (final)")


def ablation(section, runs: list[Loaded], datasets: list[str]) -> FigureSpec | None:
    """Retention / reconsolidation ablation, a panel per dataset that has a one-part variant."""
    present = [ds for ds in datasets if any(r.data.dataset == ds and ablation_arm(r.data) in (
        "retention only", "reconsolidation only", "oracle bank") for r in runs)]
    if not present:
        return None

    def draw():
        fig, axes = grid(len(present), MIN_WIDTH)
        for ax, ds in zip(axes, present):
            _ablation_panel(ax, _ablation_bars(runs, ds), ds)
        legend(fig, axes)
        fig.suptitle(f"Diff-Tuning ablation: retention and reconsolidation — {section_key_str(section)}")
        return fig

    oracle = any(ablation_arm(r.data) == "oracle bank" for r in runs)
    return FigureSpec(f"{slug(section)}-ablation-diff-tuning", section_key_str(section),
                      "Diff-Tuning ablation: knowledge retention and reconsolidation"
                      + (", and the oracle bank" if oracle else "") + " (final FID)", draw)


# -- oracle bank table (issue 30) -------------------------------------------------------------

def _paired(a: dict[int, float], b: dict[int, float]) -> list[float]:
    return [a[s] - b[s] for s in sorted(a) if s in b]


def oracle_bank_tables(rs: ResultSet) -> list[SimpleTable]:
    """Diff-Tuning with the oracle bank (the source's own training images, knowledge_bank.oracle)
    against Diff-Tuning with its sampled bank, per dataset, paired by seed, with full fine-tuning
    beside them; the last row is the relative change (oracle − sampled) / sampled averaged over the
    datasets per seed (seeds every dataset has in both arms). Below 0: a better bank helps, so the
    sampled bank is what limits retention; 0 inside the interval at a sampled bank that costs FID:
    retention itself does not help here. The runs are the ablation figure's (same arms)."""
    from bench.report.extras import SimpleTable, _ci, _g

    out = []
    arms: dict[tuple, dict[str, dict[str, dict[int, float]]]] = {}
    # A seed run both as written and tracked (--track: same training) counts once: the untracked run wins
    for r in sorted(rs.runs + rs.variants, key=lambda r: not r.data.task_overrides):
        arm = ablation_arm(r.data)
        if arm in ("oracle bank", "both", "full-ft") and r.data.metrics.fid is not None:
            arms.setdefault(r.section, {}).setdefault(arm, {}).setdefault(r.data.dataset, {})[r.data.seed] = \
                float(r.data.metrics.fid)
    for section, by in sorted(arms.items()):
        oracle, sampled, full = by.get("oracle bank", {}), by.get("both", {}), by.get("full-ft", {})
        datasets = [ds for ds in oracle if ds in sampled]
        if not datasets:
            continue
        rows, csv_rows = [], []
        for ds in datasets:
            delta = _paired(oracle[ds], sampled[ds])
            di = t_interval(delta) if delta else None
            rows.append([ds, _ci(list(sampled[ds].values()), 2), _ci(list(oracle[ds].values()), 2),
                         _ci(delta, 2) if delta else "—", _ci(list(full[ds].values()), 2) if ds in full else "—"])
            csv_rows.append([*section, ds, _g(t_interval(list(sampled[ds].values())).mean),
                             _g(t_interval(list(oracle[ds].values())).mean),
                             *([_g(di.mean), _g(di.low), _g(di.high), di.n] if di else ["", "", "", ""])])
        seeds = sorted(set.intersection(*(set(oracle[ds]) & set(sampled[ds]) for ds in datasets)))
        rel = [sum((oracle[ds][s] - sampled[ds][s]) / sampled[ds][s] for ds in datasets) / len(datasets)
               for s in seeds]
        if rel:
            ri = t_interval([100 * x for x in rel])
            rows.append([f"Mean relative change, % ({len(datasets)} datasets)", "", "", _ci([100 * x for x in rel], 1),
                         ""])
            csv_rows.append([*section, "mean_relative_percent", "", "", _g(ri.mean), _g(ri.low), _g(ri.high), ri.n])
        task, version, profile = section
        out.append(SimpleTable(section_key_str(section), f"{task}-v{version}-{profile}-oracle-bank",
                               "Oracle knowledge bank: Diff-Tuning (default config) with the source's own training "
                               "images as its bank against its sampled bank, final FID; Δ = oracle − sampled, "
                               "paired by seed (below 0: the sampled bank limits retention)",
                               ["Dataset", "Diff-Tuning, sampled bank", "Diff-Tuning, oracle bank", "Δ (oracle − sampled)",
                                "full-ft"], rows,
                               ["task", "task_version", "profile", "dataset", "fid_sampled_bank", "fid_oracle_bank",
                                "delta_mean", "delta_low", "delta_high", "n"], csv_rows, text_columns=1))
    return out


# -- sweeps (Fig. 5c-d, 6a-b) ---------------------------------------------------------------------

def _dig(obj, path: list[str]):
    for part in path:
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def _method_path(key: str) -> list[str]:
    """A method sweep key as a path into method_config (`tau`, `method.tau`, `diff-tuning.tau`)."""
    return (key[len("method."):] if key.startswith("method.") else key).split(".")


def _without(cfg: dict, path: list[str]) -> dict:
    out = copy.deepcopy(cfg)
    parent = _dig(out, path[:-1])
    if isinstance(parent, dict):
        parent.pop(path[-1], None)
    return out


@dataclass(frozen=True)
class SweepAxis:
    method: str
    key: str
    task_path: bool  # a dotted task path (else a method config field)

    def value(self, d):
        """The run's value of the key: its sweep point, else its config or task spec (the default)."""
        if self.key in d.sweep:
            return d.sweep[self.key]
        if self.task_path:
            return _overrides(d).get(self.key, _dig(d.resolved_spec["spec"], self.key.split(".")))
        return _dig(d.method_config, _method_path(self.key))

    def context(self, d) -> str:
        """Everything but the swept key: runs are pooled only within one context."""
        if self.task_path:
            return _setting(d, overrides={k: v for k, v in _overrides(d).items() if k != self.key})
        return _setting(d, method_config=_without(d.method_config, _method_path(self.key)))

    @property
    def stem(self) -> str:
        return re.sub(r"[^A-Za-z0-9_+-]+", "-", f"{self.method}-{self.key}")

    def titles(self) -> tuple[str, str]:
        leaf = self.key if self.task_path else _method_path(self.key)[-1]
        phrase, axis = SWEEP_TITLES.get(self.key) or SWEEP_TITLES.get(leaf) or (f"sensitivity to {self.key}", self.key)
        method = "+".join(METHOD_TITLES.get(p, p) for p in self.method.split("+"))
        return f"{method}: {phrase}", axis


def sweep_axes(variants: list[Loaded]) -> list[SweepAxis]:
    seen: dict[tuple[str, str], bool] = {}
    for r in variants:
        for key in r.data.sweep:
            task_path = key in r.data.task_overrides
            seen[(r.data.method, key)] = seen.get((r.data.method, key), False) or task_path
    return [SweepAxis(m, k, t) for (m, k), t in sorted(seen.items())]


def _numeric(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _as_x(v):
    """1 and 1.0 are one point; an unhashable value is plotted by its text."""
    if isinstance(v, (list, dict)):
        return json.dumps(v, sort_keys=True)
    return float(v) if _numeric(v) else v


@dataclass
class SweepSeries:
    label: str
    budget: dict
    points: dict[Any, dict[int, float]]  # x -> seed -> FID
    default: Any = None                   # the main run's value, if it is part of this series


def _sweep_series(axis: SweepAxis, runs: list[Loaded], variants: list[Loaded], dataset: str) -> list[SweepSeries]:
    def mine(r):
        return r.data.method == axis.method and r.data.dataset == dataset and r.data.metrics.fid is not None

    points = [r for r in variants if mine(r) and axis.key in r.data.sweep]
    mains = [r for r in runs + variants if mine(r) and _is_main(r.data)]
    contexts: dict[str, list[Loaded]] = {}
    for r in points:
        contexts.setdefault(axis.context(r.data), []).append(r)
    labels = _series_labels(axis, contexts)
    series = []
    for ctx, sel in sorted(contexts.items(), key=lambda kv: labels[kv[0]]):
        main = [r for r in mains if axis.context(r.data) == ctx]
        default = axis.value(main[0].data) if main else None
        by_x: dict[Any, list[Loaded]] = {}
        for r in main + sel:  # main runs first: a seed measured twice counts once
            v = axis.value(r.data)
            if v is not None:
                by_x.setdefault(_as_x(v), []).append(r)
        pts = {x: _by_seed(group, _fid) for x, group in by_x.items()}
        series.append(SweepSeries(labels[ctx], sel[0].data.budget, pts, _as_x(default)))
    return series


def _method_defaults(name: str) -> dict[str, Any]:
    """The default config of a single registered method ({} for compositions or unknown names)."""
    from bench.errors import BenchError
    from bench.registry import method_class

    try:
        return method_class(name).Config().model_dump(mode="json") if "+" not in name else {}
    except BenchError:
        return {}


def _series_labels(axis: SweepAxis, contexts: dict[str, list[Loaded]]) -> dict[str, str]:
    out = {}
    for ctx, sel in contexts.items():
        d = sel[0].data
        parts = [f"{k}={v}" for k, v in sorted(d.sweep.items()) if k != axis.key]
        parts += [f"{k}={v}" for k, v in sorted(_overrides(d).items()) if k not in d.sweep]
        defaults = _method_defaults(d.method)  # config fields set apart from the sweep (e.g. bank_tau)
        parts += [f"{k}={v}" for k, v in sorted(d.method_config.items())
                  if k in defaults and defaults[k] != v and k != axis.key.split(".")[-1] and k not in d.sweep]
        if d.budget_override:
            parts.append(f"steps={d.budget['steps']}")
        out[ctx] = axis.method + (f" ({', '.join(parts)})" if parts else "")
    counts = list(out.values())
    return {c: lab if counts.count(lab) == 1 else f"{lab} [{c[:6]}]" for c, lab in out.items()}


def _reference(runs: list[Loaded], dataset: str, budget: dict):
    """Full fine-tuning under the task as written with the same budget: the reference line."""
    sel = [r for r in runs if r.data.method == FULL_FT and r.data.dataset == dataset and _is_main(r.data)
           and r.data.budget == budget and r.data.metrics.fid is not None]
    seeds = _by_seed(sel, _fid)
    return t_interval(list(seeds.values())) if seeds else None


def _positions(series: list[SweepSeries]) -> tuple[dict, bool]:
    """x value -> plotted position; categorical (str) values are spread evenly in sorted order."""
    xs = {x for s in series for x in s.points}
    if all(_numeric(x) for x in xs):
        return {x: x for x in xs}, True
    return {x: i for i, x in enumerate(sorted(xs, key=str))}, False


def _series_plot(ax, s: SweepSeries, pos: dict, style: Style) -> None:
    color = style.colour
    xs = sorted(s.points, key=lambda x: pos[x])
    ivs = [t_interval(list(s.points[x].values())) for x in xs]
    n = sorted({iv.n for iv in ivs})
    ntext = f"n={n[0]}" if len(n) == 1 else f"n={n[0]}–{n[-1]}"
    ax.errorbar([pos[x] for x in xs], [iv.mean for iv in ivs], yerr=[_half(iv) for iv in ivs],
                fmt=style.marker + style.linestyle, color=color, capsize=2, lw=1.0, ms=3.5,
                label=f"{s.label} ({ntext})")
    for x, iv in zip(xs, ivs):
        ax.annotate(f"n={iv.n}" if iv.n >= 2 else "n=1, no CI", (pos[x], iv.mean), textcoords="offset points",
                    xytext=(3, 3), fontsize=6, color=color)
    if s.default is not None and s.default in pos:
        ax.plot([pos[s.default]], [ivs[xs.index(s.default)].mean], marker="o", ms=8, mfc="none", mec=color,
                ls="none", label="default (main run)")


def _reference_plot(ax, iv) -> None:
    color = method_colour(FULL_FT)
    ax.axhline(iv.mean, color=color, ls="--", lw=1.0, label=f"full-ft (main run) (n={iv.n})")
    if iv.n >= 2:
        ax.axhspan(iv.low, iv.high, color=color, alpha=0.12, lw=0)


def _sweep_panel(ax, axis: SweepAxis, series: list[SweepSeries], runs: list[Loaded], dataset: str,
                 style: dict[str, Style], xlabel: str) -> None:
    pos, numeric = _positions(series)
    for s in series:
        _series_plot(ax, s, pos, style[s.label])
    for budget in {canonical_hash(s.budget): s.budget for s in series}.values():
        iv = _reference(runs, dataset, budget) if axis.method != FULL_FT else None
        if iv is not None:
            _reference_plot(ax, iv)
    if numeric:
        vals = [x for x in pos if x > 0]
        if len(vals) == len(pos) and max(vals) / min(vals) >= 20:
            ax.set_xscale("log")
    else:
        ax.set_xticks(list(pos.values()), [str(x) for x in pos], rotation=20, ha="right")
    ax.set_title(dataset)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("FID (final)")


def sweep_figure(section, axis: SweepAxis, runs: list[Loaded], variants: list[Loaded],
                 datasets: list[str]) -> FigureSpec | None:
    per_ds = {ds: _sweep_series(axis, runs, variants, ds) for ds in datasets}
    # A panel needs a curve: at least two values of the key in one series (a lone variant, e.g. the
    # ablation's tau=0 with another bank_tau, is drawn by the ablation figure instead).
    present = [ds for ds in datasets if any(len(x.points) >= 2 for x in per_ds[ds])]
    if not present:
        return None
    title, xlabel = axis.titles()

    def draw():
        fig, axes = grid(len(present), MIN_WIDTH)
        style = styles({s.label: axis.method for ds in present for s in per_ds[ds]})
        for ax, ds in zip(axes, present):
            _sweep_panel(ax, axis, per_ds[ds], runs, ds, style, xlabel)
        legend(fig, axes)
        fig.suptitle(f"{title} — {section_key_str(section)}")
        return fig

    return FigureSpec(f"{slug(section)}-sweep-{axis.stem}", section_key_str(section),
                      f"{title} (final FID against the swept value)", draw)


def sweeps(section, runs: list[Loaded], variants: list[Loaded], datasets: list[str]) -> list[FigureSpec]:
    """One figure per (method, swept key) found in the variants, a panel per dataset."""
    specs = [sweep_figure(section, axis, runs, variants, datasets) for axis in sweep_axes(variants)]
    return [s for s in specs if s is not None]
