"""Head-to-head comparisons a family's papers make between two methods (`Family.head_to_head`),
shown in the generic table's section beside the comparisons with full fine-tuning.

A3FT's Table 1 claim, for instance: A3FT beats attention-only fine-tuning on cFID. The comparison is
paired by dataset and seed: per (dataset, seed) both ran, the relative difference
(against - method) / against (positive: `method` is better on a lower-is-better metric), averaged
over the datasets per seed (seeds shared on every dataset), with a 95% t interval over seeds. Its
verdict (bench/verdicts.py) is against the paper's effect implied by reference/reported.yaml (the
same relative difference of the paper's per-dataset numbers), and the task's preconditions gate it
as they gate `method`'s verdict against full fine-tuning. The tracked curves (`tracking.curves`)
give the same paired comparison at every tracked step both share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from bench.report.extras import SimpleTable, md_row
from bench.report.reported import implied_promotion
from bench.stats import Interval, small_n_text, t_interval
from bench.verdicts import Verdict, classify

if TYPE_CHECKING:
    from bench.report.aggregate import Row, Table
    from bench.report.load import Loaded


@dataclass
class StepComparison:
    step: int
    diff: Interval  # (method - against), averaged over datasets per seed, over seeds
    relative: Interval  # (against - method) / against, likewise


@dataclass
class HeadToHead:
    method: str
    against: str
    metric: str
    method_hash: str
    against_hash: str
    datasets: list[str]  # those both have, the relative difference averaged over
    relative: dict[int, float]  # seed -> mean over datasets of (against - method) / against
    interval: Interval | None
    verdict: Verdict
    paper: str  # how the verdict names the paper's effect
    steps: list[StepComparison] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.method} against {self.against}"


def _row(t: Table, method: str) -> Row | None:
    """The method's row at the task's own budget with the most results (a --steps row is another question)."""
    cands = [r for r in t.rows if r.method == method and not r.reported_only and not r.budget_override]
    return max(cands, key=lambda r: (sum(len(c.values) for c in r.cells.values()), r.config_hash)) if cands else None


def relative_by_seed(a: dict[str, dict[int, float]], b: dict[str, dict[int, float]], lower_is_better: bool = True,
                     ) -> tuple[list[str], dict[int, float]]:
    """a, b: dataset -> seed -> value. The datasets both have, and seed -> mean over them of
    (b - a) / b (sign flipped when higher is better: positive means `a` is better), over the seeds
    both have on every one of those datasets."""
    datasets = [d for d in a if d in b and set(a[d]) & set(b[d])]
    if not datasets:
        return [], {}
    seeds = set.intersection(*(set(a[d]) & set(b[d]) for d in datasets))
    sign = 1.0 if lower_is_better else -1.0
    return datasets, {s: float(np.mean([sign * (b[d][s] - a[d][s]) / b[d][s] for d in datasets]))
                      for s in sorted(seeds)}


def _curve_values(runs: list[Loaded], method: str, cfg: str, metric: str) -> dict[str, dict[int, dict[int, float]]]:
    """dataset -> seed -> step -> tracked value of one row's runs."""
    out: dict[str, dict[int, dict[int, float]]] = {}
    for r in runs:
        if r.data.method != method or r.data.config_hash != cfg:
            continue
        tracking = getattr(r.data, "tracking", None)
        curve = (tracking.curves.get(metric) if tracking is not None else None) or []
        if curve:
            out.setdefault(r.data.dataset, {})[r.data.seed] = {int(s): float(v) for s, v in curve}
    return out


def step_comparisons(a: dict[str, dict[int, dict[int, float]]], b: dict[str, dict[int, dict[int, float]]],
                     lower_is_better: bool = True) -> list[StepComparison]:
    """Per tracked step that every paired (dataset, seed) has in both curves: the paired difference
    (a - b) and relative difference, each averaged over datasets per seed, 95% t over seeds."""
    pairs = [(d, s) for d in a if d in b for s in a[d] if s in b[d]]
    if not pairs:
        return []
    datasets = sorted({d for d, _ in pairs})
    seeds = set.intersection(*({s for d2, s in pairs if d2 == d} for d in datasets))
    keep = [(d, s) for d, s in pairs if s in seeds]
    steps = sorted(set.intersection(*(set(a[d][s]) & set(b[d][s]) for d, s in keep))) if keep else []
    sign = 1.0 if lower_is_better else -1.0
    out = []
    for step in steps:
        diff = [float(np.mean([a[d][s][step] - b[d][s][step] for d in datasets])) for s in sorted(seeds)]
        rel = [float(np.mean([sign * (b[d][s][step] - a[d][s][step]) / b[d][s][step] for d in datasets]))
               for s in sorted(seeds)]
        out.append(StepComparison(step, t_interval(diff), t_interval(rel)))
    return out


def head_to_heads(t: Table, runs: list[Loaded]) -> list[HeadToHead]:
    """The pairs the runs' family declares for this table's metric, where both methods have a row."""
    from bench.families import family_class
    from bench.preconditions import out_of_regime

    families = {r.data.family for r in runs}
    declared = []
    for fam in sorted(families):
        try:
            declared += [p for p in family_class(fam).head_to_head if p[2] == t.metric.key]
        except Exception:  # a plugin family that is not installed here declares nothing
            continue
    out = []
    lower = t.metric.lower_is_better
    for method, against, _ in declared:
        a, b = _row(t, method), _row(t, against)
        if a is None or b is None:
            continue
        datasets, rel = relative_by_seed({d: a.cells[d].values for d in t.datasets if d in a.cells},
                                         {d: b.cells[d].values for d in t.datasets if d in b.cells}, lower)
        implied = implied_promotion(t.reported.values(), method, against, lower)
        paper = (f"the paper's {implied.value * 100:+.1f}%{implied.mark} (implied by its {t.metric.title} on "
                 f"{len(implied.datasets)} datasets, {', '.join(f'`{e}`' for e in implied.entries)})"
                 if implied is not None else None)
        kw = dict(paper_effect=implied.value if implied is not None else None, paper_text=paper,
                  out_of_regime=out_of_regime(t.regime, method))
        iv = t_interval(list(rel.values())) if len(rel) >= 2 else None
        verdict = (classify(iv.low, iv.high, sd=iv.std, n=iv.n, fmt="+.1%", alpha=0.05, **kw) if iv is not None
                   else classify(float("nan"), float("nan"), **kw))
        h = HeadToHead(method, against, t.metric.key, a.config_hash, b.config_hash, datasets, rel, iv, verdict,
                       paper or "no reported effect")
        h.steps = step_comparisons(_curve_values(runs, method, a.config_hash, t.metric.key),
                                   _curve_values(runs, against, b.config_hash, t.metric.key), lower)
        out.append(h)
    return out


def _iv(iv: Interval, digits: int, scale: float = 1.0, unit: str = "") -> str:
    ci = (f" ± {iv.half_width * scale:.{digits}f}" if iv.n >= 2 and math.isfinite(iv.half_width) else " (no CI)")
    mark = " *" if iv.n >= 2 and (iv.low > 0 or iv.high < 0) else ""
    return f"{iv.mean * scale:+.{digits}f}{unit}{ci} (n={iv.n}){mark}"


def verdict_line(h: HeadToHead, t: Table) -> str:
    if h.interval is None:
        return (f"- {h.name}: {h.verdict} (not compared: fewer than two seeds shared on the datasets both have, "
                f"{', '.join(h.datasets) or 'none'})")
    iv = h.interval
    every = "all" if len(h.datasets) == len(t.datasets) else f"{len(h.datasets)}/{len(t.datasets)}"
    return (f"- {h.name}: {h.verdict}. Relative difference ({h.against} − {h.method}) / {h.against} of "
            f"{t.metric.title}, paired by dataset and seed, averaged over {every} datasets per seed: "
            f"{iv.mean * 100:+.1f}% ± {iv.half_width * 100:.1f} points (95% t interval, one claim, n={iv.n} seeds"
            f"{small_n_text(list(h.relative.values()), 0.95, 1, 100, '%')}); positive: {h.method} is better")


def step_table(h: HeadToHead, t: Table) -> SimpleTable:
    d = t.metric.digits
    rows, csv_rows = [], []
    for sc in h.steps:
        rows.append([str(sc.step), _iv(sc.diff, d), _iv(sc.relative, 2, 100, "%")])
        csv_rows.append([t.task, t.version, t.profile, t.metric.key, h.method, h.method_hash, h.against,
                         h.against_hash, sc.step, *(_num(x) for x in (sc.diff.mean, sc.diff.low, sc.diff.high)),
                         *(_num(x) for x in (sc.relative.mean, sc.relative.low, sc.relative.high)), sc.diff.n])
    return SimpleTable(
        f"{t.key}/{t.profile}", f"{t.slug}-{h.method}-vs-{h.against}-tracked",
        f"{h.name} at each tracked step ({t.metric.title}), paired by dataset and seed",
        ["Step", f"Δ {t.metric.title} ({h.method} − {h.against})", f"Relative ({h.against} − {h.method}) / {h.against}"],
        rows, ["task", "task_version", "profile", "metric", "method", "method_config_hash", "against",
               "against_config_hash", "step", "diff_mean", "diff_ci95_low", "diff_ci95_high", "relative_mean",
               "relative_ci95_low", "relative_ci95_high", "n_seeds"], csv_rows, text_columns=1)


def _num(x: float) -> str:
    return "" if not math.isfinite(x) else f"{x:.6g}"


def markdown(t: Table) -> list[str]:
    """The section's lines: per declared pair, its verdict and its tracked-step table."""
    out = []
    for h in t.head_to_head:
        out += [f"{h.method} against {h.against} ({t.metric.title}; the paper's claim that {h.method} is better):", "",
                verdict_line(h, t), ""]
        if h.steps:
            st = step_table(h, t)
            out += [f"{h.name} at each tracked step (mean over datasets per seed, 95% t over seeds, n seeds; * where "
                    f"the interval excludes 0; a note, not corrected over steps):", "", md_row(st.header),
                    md_row(["---"] + ["---:"] * (len(st.header) - 1)), *(md_row(r) for r in st.rows), ""]
    return out
