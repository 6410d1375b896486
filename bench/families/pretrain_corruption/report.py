"""The corruption study's tables, verdict and figures (Chen et al. 2024; task family
pretrain-corruption), from its run files: every run is a sweep point (eta), so none of it is in the
main method tables.

A setting is (method and its config, eta, fixed or random corruption, other task overrides except
what only changes measurement, budget); its seeds are pooled. Each row is reported at the guidance
scale its runs selected (the grid point with the lowest FID, per run: the paper's "best guidance")
and compared with the reference setting, `clean` at eta = 0, by a paired difference over shared
seeds; the p-values of a table are Holm-corrected together. Intervals are 95% Student-t over
seeds, n shown.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.families.pretrain_corruption import PUBLISHED_OVERRIDES
from bench.report.colours import method_colour
from bench.report.extras import SimpleTable, _g
from bench.report.load import Loaded, ResultSet, section_key_str
from bench.report.study import StudyReport, study_markdown
from bench.spec import canonical_hash
from bench.stats import Interval, holm, paired_difference, paired_p_value, small_n_text, t_interval
from bench.verdicts import adjusted_confidence, classify

FAMILY = "pretrain-corruption"
REFERENCE = "clean"
ALPHA = 0.05
SLIGHT, SEVERE = (2.5, 5.0, 7.5), (15.0, 20.0)  # the paper's "slight" band and its severe end
# key -> (title, higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "fid": ("FID", False), "sfid": ("sFID", False), "is": ("IS", True), "precision": ("Precision", True),
    "recall": ("Recall", True), "rmd": ("top-1% RMD", True), "entropy": ("Entropy (nats)", True),
    "mem_ratio": ("Memorisation ratio", False), "top5_l2": ("Top-5 L2 to training set", True),
}
_MEASUREMENT_ONLY = ("tracking.", "params.track_guidance", "params.guidance_scales", "params.select_by",
                     "params.memorization")


def metric_value(metrics: dict[str, Any], key: str) -> float | None:
    if key in ("precision", "recall"):
        v = (metrics.get("prc") or {}).get(key)
    else:
        v = metrics.get(key)
        if isinstance(v, dict):
            v = v.get("mean", v.get("entropy"))
    return None if v is None else float(v)


@dataclass(frozen=True)
class Setting:
    method: str
    config: str  # json of the method config, "" when it is the default
    eta: float
    mode: str
    extra: str  # other task overrides, "" when none
    steps: int
    weights: str = "trained"  # or "published": the released model of this eta, evaluated without training

    @property
    def label(self) -> str:
        parts = [self.method + (f" {_short(self.config)}" if self.config else ""), f"η={self.eta:g}%"]
        if self.weights != "trained":
            parts.append(f"{self.weights} model")
        if self.mode != "fixed":
            parts.append(self.mode)
        if self.extra:
            parts.append(self.extra)
        return ", ".join(parts)

    @property
    def is_reference(self) -> bool:
        return self.method == REFERENCE and self.eta == 0 and not self.config and not self.extra


def is_sweep_point(st: Setting, g) -> bool:
    """A point of the eta sweep proper: clean, fixed corruption, nothing else changed, and the
    models this section trained (its published-model evaluations where it trained none)."""
    kind = "trained" if any(k.weights == "trained" for k in g) else "published"
    return st.method == REFERENCE and st.mode == "fixed" and not st.config and not st.extra and st.weights == kind


def _short(config_json: str) -> str:
    return "[" + ", ".join(f"{k}={v}" for k, v in json.loads(config_json).items()) + "]"


def _defaults(method: str) -> dict:
    try:
        from bench.registry import method_class

        return method_class(method).Config().model_dump(mode="json")
    except Exception:  # a plugin that is not installed here: show its whole config
        return {}


def setting_of(d) -> Setting:
    params = d.resolved_spec["spec"].get("params") or {}
    overrides = {**(d.task_overrides or {})}
    eta = float(overrides.pop("params.eta", params.get("eta", 0.0)))
    mode = str(overrides.pop("params.corruption", params.get("corruption", "fixed")))
    weights = str(overrides.pop("params.weights", params.get("weights", "trained")))
    if weights == "published":  # what the mode sets is implied by it (bench/families/pretrain_corruption/)
        for key in PUBLISHED_OVERRIDES:
            overrides.pop(key, None)
    extra = ", ".join(f"{k}={v}" for k, v in sorted(overrides.items()) if not k.startswith(_MEASUREMENT_ONLY))
    defaults = _defaults(d.method)
    changed = {k: v for k, v in d.method_config.items() if defaults.get(k, object()) != v}
    return Setting(d.method, json.dumps(changed, sort_keys=True) if changed else "", eta, mode, extra,
                   int(d.budget.get("steps", d.training.steps)), weights)


def _raw(d) -> dict:
    return d.model_dump(mode="json")


def groups(runs: list[Loaded]) -> dict[Setting, dict[int, dict]]:
    """setting -> seed -> raw result (a seed measured twice counts once: the later file wins)."""
    out: dict[Setting, dict[int, dict]] = {}
    for r in sorted(runs, key=lambda r: str(r.path)):
        if r.data.family == FAMILY:
            out.setdefault(setting_of(r.data), {})[r.data.seed] = _raw(r.data)
    return dict(sorted(out.items(), key=lambda kv: (kv[0].method != REFERENCE, kv[0].method, kv[0].mode,
                                                     kv[0].eta, kv[0].config, kv[0].extra, kv[0].steps)))


def _values(seeds: dict[int, dict], key: str, guidance: str | None = None) -> dict[int, float]:
    out = {}
    for s, raw in seeds.items():
        m = raw["metrics"] if guidance is None else (raw.get("guidance", {}).get("grid", {}).get(guidance) or {})
        v = metric_value(m, key)
        if v is not None and math.isfinite(v):
            out[s] = v
    return out


def _best(seeds: dict[int, dict]) -> str:
    counts = Counter(str(raw.get("guidance", {}).get("best")) for raw in seeds.values())
    g, k = counts.most_common(1)[0]
    return f"{g} ({k}/{len(seeds)})" if len(counts) > 1 else g


@dataclass
class Comparison:
    setting: Setting
    diff: Any  # Interval of (setting - reference) FID over shared seeds
    p: float | None
    p_holm: float | None = None

    @property
    def verdict(self) -> str:
        if self.p_holm is None or self.diff is None:
            return "not compared"
        if self.p_holm >= ALPHA:
            return "no significant difference"
        return "lower FID than clean" if self.diff.mean < 0 else "higher FID than clean"


def comparisons(g: dict[Setting, dict[int, dict]], key: str = "fid") -> dict[Setting, Comparison]:
    """Every setting against clean at eta 0 with the same budget, Holm over all of them."""
    out = {}
    for st, seeds in g.items():
        ref = next((v for k, v in g.items() if k.is_reference and k.steps == st.steps and k.weights == st.weights),
                   None)
        if st.is_reference or ref is None:
            continue
        a, b = _values(seeds, key), _values(ref, key)
        out[st] = Comparison(st, paired_difference(a, b), paired_p_value(a, b))
    adjusted = holm({st: c.p for st, c in out.items() if c.p is not None})
    for st, p in adjusted.items():
        out[st].p_holm = p
    return out


def _reference(g: dict[Setting, dict[int, dict]], st: Setting) -> dict[int, dict] | None:
    """The clean eta-0 seeds `st` is compared with: same budget, same kind of weights."""
    return next((v for k, v in g.items() if k.is_reference and k.steps == st.steps and k.weights == st.weights), None)


def _scales(seeds: dict[int, dict]) -> set[str]:
    return {k for raw in seeds.values() for k in raw.get("guidance", {}).get("grid", {})}


def grid_comparisons(g: dict[Setting, dict[int, dict]], key: str = "fid") -> dict[Setting, dict[str, Interval | None]]:
    """setting -> guidance scale -> the 95% t interval of (setting - clean at eta 0) at THAT scale,
    paired by seed (None: fewer than two shared seeds), over every scale of the grid
    (`guidance.grid`) both have; the paper compares at each scale, not only at each one's best."""
    out: dict[Setting, dict[str, Interval | None]] = {}
    for st, seeds in g.items():
        ref = _reference(g, st)
        if st.is_reference or ref is None:
            continue
        scales = sorted(_scales(seeds) & _scales(ref), key=float)
        if scales:
            out[st] = {gs: paired_difference(_values(seeds, key, gs), _values(ref, key, gs)) for gs in scales}
    return out


def _iv_text(iv: Interval | None, digits: int = 2) -> str:
    if iv is None:
        return "—"
    ci = f" ± {iv.half_width:.{digits}f}" if iv.n >= 2 and math.isfinite(iv.half_width) else " (no CI)"
    mark = " *" if iv.n >= 2 and (iv.low > 0 or iv.high < 0) else ""
    return f"{iv.mean:+.{digits}f}{ci} (n={iv.n}){mark}"


def grid_note(section, st: Setting, by_scale: dict[str, Interval | None]) -> str:
    """One note line: at which guidance scales the paired interval excludes 0, and on which side."""
    lower = [gs for gs, iv in by_scale.items() if iv is not None and iv.high < 0]
    higher = [gs for gs, iv in by_scale.items() if iv is not None and iv.low > 0]
    undecided = [gs for gs, iv in by_scale.items() if iv is not None and iv.low <= 0 <= iv.high]
    unpaired = [gs for gs, iv in by_scale.items() if iv is None]
    parts = []
    if lower:
        parts.append(f"lower FID than clean at w = {', '.join(lower)}")
    if higher:
        parts.append(f"higher FID than clean at w = {', '.join(higher)}")
    if not lower and not higher:
        parts.append("the interval contains 0 at every scale" if undecided else "no scale has two shared seeds")
    elif undecided:
        parts.append(f"contains 0 at w = {', '.join(undecided)}")
    if unpaired:
        parts.append(f"fewer than two shared seeds at w = {', '.join(unpaired)}")
    ns = sorted({iv.n for iv in by_scale.values() if iv is not None})
    return (f"- {section_key_str(section)}: Guidance grid, {st.label} against clean at η=0 (a note; ΔFID paired by "
            f"seed at each scale, 95% t interval per scale, not corrected over scales, n={'/'.join(map(str, ns)) or 0} "
            f"seeds): " + "; ".join(parts) + ".")


def grid_tables(rs: ResultSet) -> list[SimpleTable]:
    """Per section: ΔFID against clean at eta 0 at every guidance scale of the grid, paired by seed."""
    out = []
    items = rs.runs + rs.variants
    for section in sorted({r.section for r in items if r.data.family == FAMILY}):
        g = groups([r for r in items if r.section == section])
        cmp = grid_comparisons(g)
        if not cmp:
            continue
        scales = sorted({gs for by in cmp.values() for gs in by}, key=float)
        rows, csv_rows = [], []
        for st, by in cmp.items():
            rows.append([st.label, *(_iv_text(by.get(gs)) for gs in scales)])
            for gs in scales:
                if gs not in by:
                    continue
                iv = by[gs]
                ref = _reference(g, st)
                shared = sorted(set(_values(g[st], "fid", gs)) & set(_values(ref, "fid", gs)))
                csv_rows.append([*section, st.method, st.config, st.eta, st.mode, st.extra, st.steps, st.weights, gs,
                                 _g(iv.mean) if iv else "", _g(iv.low) if iv else "", _g(iv.high) if iv else "",
                                 iv.n if iv else len(shared), " ".join(map(str, shared))])
        task, version, profile = section
        out.append(SimpleTable(
            section_key_str(section), f"{task}-v{version}-{profile}-corruption-guidance-grid",
            "ΔFID against clean at η=0 at every guidance scale w (not only each setting's best), paired by seed at "
            "that scale: mean ± 95% t half-width (n seeds), * where the interval excludes 0 (per scale, not "
            "corrected over scales)",
            ["Setting", *(f"w={gs}" for gs in scales)], rows,
            ["task", "task_version", "profile", "method", "method_config", "eta_percent", "corruption", "overrides",
             "steps", "weights", "guidance", "fid_diff_vs_clean", "ci95_low", "ci95_high", "n", "seeds"], csv_rows,
            text_columns=1))
    return out


def _mean_ci(vals: list[float], digits: int) -> str:
    """Mean ± 95% t half-width (the row's Seeds column gives n)."""
    iv = t_interval(vals)
    hw = f" ± {iv.half_width:.{digits}f}" if iv.n >= 2 and math.isfinite(iv.half_width) else ""
    return f"{iv.mean:.{digits}f}{hw}"


def _diff_text(c: Comparison | None, digits: int = 2) -> str:
    if c is None or c.diff is None:
        return "—"
    d = c.diff
    ci = f" ± {d.half_width:.{digits}f}" if d.n >= 2 and math.isfinite(d.half_width) else " (no CI)"
    mark = "" if c.p_holm is None else (" ▼" if c.p_holm < ALPHA and d.mean < 0 else
                                         " ▲" if c.p_holm < ALPHA else "")
    return f"{d.mean:+.{digits}f}{ci} (n={d.n}){mark}"


def tables(rs: ResultSet) -> list[SimpleTable]:
    out = []
    items = rs.runs + rs.variants
    for section in sorted({r.section for r in items if r.data.family == FAMILY}):
        g = groups([r for r in items if r.section == section])
        cmp = comparisons(g)
        task, version, profile = section
        keys = list(METRICS)
        rows, csv_rows = [], []
        for st, seeds in g.items():
            row = [st.method + (f" {_short(st.config)}" if st.config else ""), f"{st.eta:g}",
                   st.mode + (f"; {st.extra}" if st.extra else ""), _best(seeds)]
            row.append(" ".join(str(s) for s in sorted(seeds)))
            for k in keys:
                vals = _values(seeds, k)
                row.append(_mean_ci(list(vals.values()), 3 if k in ("precision", "recall", "mem_ratio", "top5_l2")
                                    else 2) if vals else "—")
                if k == "fid":
                    row.append(_diff_text(cmp.get(st)))
            rows.append(row)
            for k in keys:
                vals = _values(seeds, k)
                if vals:
                    iv = t_interval(list(vals.values()))
                    c = cmp.get(st) if k == "fid" else None
                    csv_rows.append([*section, st.method, st.config, st.eta, st.mode, st.extra, st.steps, "best", k,
                                     _g(iv.mean), _g(iv.low), _g(iv.high), iv.n,
                                     " ".join(str(s) for s in sorted(vals)),
                                     _g(c.diff.mean) if c and c.diff else "", _g(c.p_holm) if c and c.p_holm is not None
                                     else ""])
            for gs in sorted({k for raw in seeds.values() for k in raw.get("guidance", {}).get("grid", {})},
                             key=float):
                for k in keys:
                    vals = _values(seeds, k, gs)
                    if vals:
                        iv = t_interval(list(vals.values()))
                        csv_rows.append([*section, st.method, st.config, st.eta, st.mode, st.extra, st.steps, gs, k,
                                         _g(iv.mean), _g(iv.low), _g(iv.high), iv.n,
                                         " ".join(str(s) for s in sorted(vals)), "", ""])
        header = ["Method", "η (%)", "Corruption", "Best guidance", "Seeds"]
        for k in keys:
            header.append(METRICS[k][0])
            if k == "fid":
                header.append("ΔFID vs clean η=0 (paired)")
        out.append(SimpleTable(
            section_key_str(section), f"{task}-v{version}-{profile}-corruption",
            "Pre-training under label corruption: each setting at its best guidance scale (lowest FID); "
            "ΔFID paired over seeds with clean at η=0, ▼/▲ significant after Holm over the table's rows",
            header, rows,
            ["task", "task_version", "profile", "method", "method_config", "eta_percent", "corruption", "overrides",
             "steps", "guidance", "metric", "mean", "ci95_low", "ci95_high", "n", "seeds", "fid_diff_vs_clean",
             "p_holm"], csv_rows))
    return out + grid_tables(rs) + downstream_tables(rs)


# What the paper claims for each comparison with clean pre-training (Chen et al. 2024): slight
# corruption lowers FID, severe corruption raises it, CEP lowers it. Only CEP-U against clean has a
# number in reference/reported.yaml (DiT-XL/2, ImageNet: 6.76 -> 5.51); it is carried over as a
# relative change of the clean FID, since absolute FIDs at full and tiny scale do not compare.
def _claim(st: Setting, reported, clean_fid: float | None):
    """(paper_effect, paper_sign, paper_text) of `st` against clean at eta 0, in ΔFID units."""
    if st.method == "cep-u" and st.eta == 0 and not st.extra and st.mode == "fixed" and not st.config:
        by = {(r.method, r.metric): r for r in reported or [] if r.task == "corruption-sweep" and r.dataset != "mean"}
        cep, clean = by.get(("cep-u", "fid")), by.get(("clean", "fid"))
        if cep and clean and clean_fid:
            rel = (cep.value - clean.value) / clean.value
            return (rel * clean_fid, None, f"the paper's {rel:+.1%}{cep.mark} of clean FID ({clean.value:g} -> "
                                           f"{cep.value:g}, `{cep.entry}`), i.e. {rel * clean_fid:+.2f} FID here")
    if st.method.startswith("cep") and st.eta == 0:
        return None, -1, "the paper's direction (CEP lowers FID; no number reported for this variant)"
    if st.method == REFERENCE and st.eta in SLIGHT:
        return None, -1, "the paper's direction (slight corruption lowers FID; no number in reference/reported.yaml)"
    if st.method == REFERENCE and st.eta in SEVERE:
        return None, +1, "the paper's direction (severe corruption raises FID; no number in reference/reported.yaml)"
    return None, None, None


def _claim_verdict(a: dict, b: dict, conf: float, effect, sign, text, unit: str = "seeds",
                   regime: str | None = None):
    """(verdict, interval) of a - b paired over the keys both have, at confidence `conf`; `regime`:
    the failed preconditions (bench/preconditions.py) that put it out of regime."""
    shared = sorted(set(a) & set(b))
    if len(shared) < 2:
        return classify(float("nan"), float("nan"), paper_effect=effect, paper_sign=sign, paper_text=text,
                        unit=unit, out_of_regime=regime), None, ""
    diffs = [a[k] - b[k] for k in shared]
    iv = t_interval(diffs, conf)
    small = small_n_text(diffs, conf, -1)  # lower FID is the improvement
    return classify(iv.low, iv.high, paper_effect=effect, paper_sign=sign, paper_text=text, sd=iv.std, n=iv.n,
                    unit=unit, fmt="+.2f", alpha=1 - conf, out_of_regime=regime), iv, small


def verdict_lines(rs: ResultSet, reported: list | None = None) -> list[str]:
    """The study's questions answered from the results: one verdict line (bench/verdicts.py) per
    comparison with clean at η=0 that the paper makes a claim about (Bonferroni over the section's
    comparisons), and notes for the rest."""
    from bench.preconditions import check, out_of_regime

    lines = []
    items = rs.runs + rs.variants
    for section in sorted({r.section for r in items if r.data.family == FAMILY}):
        g = groups([r for r in items if r.section == section])
        cmp = comparisons(g)
        name = section_key_str(section)
        regime = check(*section, [r for r in items if r.section == section])
        lines += [f"- {name}: Precondition {o.line()[2:]}" for o in regime]
        if not cmp:
            lines.append(f"- **{name}**: no setting can be compared with clean at η=0 yet (run it first); "
                         + str(classify(float("nan"), float("nan"), paper_effect=None, paper_sign=-1)) + ".")
            continue
        conf = adjusted_confidence(len(cmp))
        ref_of = {st: next((v for k, v in g.items() if k.is_reference and k.steps == st.steps
                            and k.weights == st.weights), {}) for st in cmp}
        claimed = []
        for st, c in cmp.items():
            ref = ref_of[st]
            clean_fid = float(np.mean(list(_values(ref, "fid").values()))) if _values(ref, "fid") else None
            effect, sign, text = _claim(st, reported, clean_fid)
            if text is None and not (st.method != REFERENCE and st.eta == 0 and not st.extra):
                continue  # no claim and not an intervention on clean data: in the table, not a verdict
            v, iv, small = _claim_verdict(_values(g[st], "fid"), _values(ref, "fid"), conf, effect, sign, text,
                                          regime=out_of_regime(regime, st.method))
            detail = (f"ΔFID {iv.mean:+.2f} ± {iv.half_width:.2f} ({100 * conf:.1f}% t interval, Bonferroni over "
                      f"{len(cmp)} comparisons, n={iv.n} seeds{small})") if iv is not None else "fewer than two shared seeds"
            claimed.append(f"- **{name}**: {st.label} against clean at η=0, ΔFID: {v}. {detail}.")
        lines += claimed
        lines += [grid_note(section, st, by) for st, by in grid_comparisons(g).items()]
        slope = fid_slope(g)
        if slope is not None:
            iv, etas = slope
            lines.append(f"- {name}: Dose-response (no paper claim of a linear trend; a note): {_trend(iv)}; FID "
                         f"moves by {_per10(iv)} per 10 points of η (least-squares slope of FID on η over η = "
                         f"{', '.join(f'{e:g}' for e in etas)}%, one slope per seed, 95% t interval over n={iv.n} "
                         f"seeds).")
        for random_st, seeds in g.items():
            fixed = next((st for st in g if st.method == random_st.method and st.config == random_st.config
                          and st.eta == random_st.eta and st.mode == "fixed" and st.extra == random_st.extra
                          and st.steps == random_st.steps), None)
            if random_st.mode != "random" or fixed is None:
                continue
            d = paired_difference(_values(seeds, "fid"), _values(g[fixed], "fid"))
            text = "fewer than two shared seeds" if d is None else \
                f"ΔFID random − fixed {d.mean:+.2f} ± {d.half_width:.2f} (n={d.n}, paired over seeds, 95% t)"
            lines.append(f"- {name}: Fixed vs random corruption ({random_st.method}, η={random_st.eta:g}%; a note): "
                         f"{text}; against clean at η=0: random {_diff_text(cmp.get(random_st))}, "
                         f"fixed {_diff_text(cmp.get(fixed))}.")
        lines += downstream_lines(rs, section)
    return lines


def fid_slope(g: dict[Setting, dict[int, dict]]):
    """(interval over seeds of the least-squares slope of FID on eta, the etas used) for the clean,
    fixed-corruption settings, using the seeds that have every eta; None below three etas."""
    return _slope({st.eta: _values(seeds, "fid") for st, seeds in g.items() if is_sweep_point(st, g)})


def _slope(by_eta: dict[float, dict]):
    """eta -> seed -> value: the t interval over seeds of each seed's least-squares slope on eta,
    over the seeds present at every eta, and the etas; None below three etas."""
    etas = sorted(by_eta)
    seeds = set.intersection(*(set(by_eta[e]) for e in etas)) if etas else set()
    if len(etas) < 3 or not seeds:
        return None
    slopes = [float(np.polyfit(etas, [by_eta[e][s] for e in etas], 1)[0]) for s in sorted(seeds)]
    return t_interval(slopes), etas


def _per10(iv) -> str:
    return f"{iv.mean * 10:+.2f}" + (f" ± {iv.half_width * 10:.2f}" if iv.n >= 2 else " (no CI)")


def _trend(iv) -> str:
    return ("FID rises with η" if iv.n >= 2 and iv.low > 0 else
            "FID falls with η" if iv.n >= 2 and iv.high < 0 else "no clear trend")


# -- downstream transfer ------------------------------------------------------------------------

FROM_RUN = "backbone.from_run"


@dataclass(frozen=True)
class Transfer:
    """Fine-tuning runs of one downstream task section and method setting whose backbones are final
    models of this study's runs (`bench run --backbone-from`)."""
    section: tuple[str, int, str]
    method: str
    config_hash: str  # of the downstream method config and budget (not of the source pin)
    extra: str  # the downstream runs' other task overrides, "" when none

    @property
    def label(self) -> str:
        return f"{self.method} [{self.config_hash[:6]}] on {section_key_str(self.section)}" + \
            (f" ({self.extra})" if self.extra else "")


def downstream(rs: ResultSet, section, metric: str = "fid", of_source: bool = False,
               ) -> dict[Transfer, dict[Setting, dict[str, dict[tuple[int, int], float]]]]:
    """transfer -> source setting -> dataset -> (source seed, downstream seed) -> FID, for every run
    whose `backbone.from_run` names a run of this corruption section with the final state it pins
    (a source redone since then is another model: its old transfers are left out). With `metric`,
    that metric of the same runs (those with a finite downstream FID) instead, where they have it;
    with `of_source`, the metric of the source run each of them was fine-tuned from (its own
    `metrics`, on its own data), so that it pairs with the downstream values key by key."""
    sources = {r.path.resolve(): r.data for r in rs.runs + rs.variants if r.section == section}
    out: dict = {}
    for r in sorted(rs.variants, key=lambda r: str(r.path)):
        pin = (r.data.task_overrides or {}).get(FROM_RUN)
        src = sources.get((rs.root / pin["result"]).resolve()) if isinstance(pin, dict) else None
        if src is None or src.provenance.get("final_state_sha256") != pin.get("final_state_sha256"):
            continue
        fid = metric_value(_raw(r.data)["metrics"], "fid")
        if fid is None or not math.isfinite(fid):
            continue
        if metric != "fid" or of_source:
            fid = metric_value(_raw(src if of_source else r.data)["metrics"], metric)
            if fid is None or not math.isfinite(fid):
                continue
        extra = ", ".join(f"{k}={v}" for k, v in sorted(r.data.task_overrides.items())
                          if k != FROM_RUN and not k.startswith("tracking."))
        # Every source gives its runs another config hash (the pin is a task override): the
        # transfer is keyed by what the downstream runs share, the method config and budget.
        t = Transfer(r.section, r.data.method, canonical_hash({"config": r.data.method_config,
                                                               "budget": r.data.budget})[:12], extra)
        cell = out.setdefault(t, {}).setdefault(setting_of(src), {}).setdefault(r.data.dataset, {})
        cell[(src.seed, r.data.seed)] = fid
    return {t: dict(sorted(v.items(), key=lambda kv: (kv[0].method != REFERENCE, kv[0].method, kv[0].mode,
                                                      kv[0].eta, kv[0].config, kv[0].extra)))
            for t, v in sorted(out.items(), key=lambda kv: kv[0].label)}


@dataclass
class TransferRow:
    setting: Setting
    per_dataset: dict[str, Interval]
    mean: dict[tuple[int, int], float]  # per (source seed, seed): FID averaged over every dataset
    diff: Interval | None = None        # mean FID minus the clean eta-0 source's, paired
    p_holm: float | None = None
    # per (source seed, seed): the mean over the datasets of log(FID / the clean eta-0 source's FID)
    log_ratio: dict[tuple[int, int], float] = field(default_factory=dict)
    log_diff: Interval | None = None    # of log_ratio averaged within each source seed, over source seeds


def transfer_datasets(settings: dict[Setting, dict[str, dict]]) -> list[str]:
    return sorted({d for by_ds in settings.values() for d in by_ds})


def averaged_datasets(settings: dict[Setting, dict[str, dict]]) -> list[str]:
    """The datasets the mean over datasets is taken over: those run from every source and seed pair
    that any dataset has. A dataset still being run (fewer source seeds so far) is shown on its own
    but left out of the mean, so that it does not shrink the mean to the seeds it has; where no
    dataset is complete, all of them (the mean then covers the pairs every dataset has)."""
    coverage = {d: {(st, k) for st, by_ds in settings.items() for k in by_ds.get(d, {})}
                for d in transfer_datasets(settings)}
    every = set().union(*coverage.values())
    complete = [d for d, c in coverage.items() if c == every]
    return complete or list(coverage)


def transfer_rows(settings: dict[Setting, dict[str, dict]], datasets: list[str]) -> list[TransferRow]:
    """One row per source setting; the mean over datasets is taken per seed pair, over pairs that
    have every dataset, and compared with the clean eta-0 source by a paired t-test (Holm over the
    rows)."""
    rows = [TransferRow(st, {d: t_interval(list(v.values())) for d, v in by_ds.items() if v},
                        _pair_means(by_ds, datasets)) for st, by_ds in settings.items()]
    ref = next((r for r in rows if r.setting.is_reference), None)
    ps = {}
    for r in rows:
        if ref is not None and r is not ref:
            r.diff = paired_difference(r.mean, ref.mean)
            ps[r.setting] = paired_p_value(r.mean, ref.mean)
            r.log_ratio = log_ratios(settings[r.setting], settings[ref.setting], datasets)
            by_src = _by_source(r.log_ratio)
            r.log_diff = t_interval(list(by_src.values())) if len(by_src) >= 2 else None
    adjusted = holm({k: p for k, p in ps.items() if p is not None})
    for r in rows:
        r.p_holm = adjusted.get(r.setting)
    return rows


def _pair_means(by_ds: dict[str, dict], datasets: list[str]) -> dict[tuple[int, int], float]:
    """(source seed, seed) -> the mean over `datasets`, over the pairs that have every one of them."""
    keys = set.intersection(*(set(by_ds.get(d, {})) for d in datasets)) if datasets else set()
    return {k: float(np.mean([by_ds[d][k] for d in datasets])) for k in sorted(keys)}


def log_ratios(a: dict[str, dict], b: dict[str, dict], datasets: list[str]) -> dict[tuple[int, int], float]:
    """(source seed, seed) -> mean over `datasets` of log(FID_a / FID_b), over the pairs both have on
    every dataset: a relative difference, so that a dataset with large FIDs does not outweigh the rest."""
    keys = set.intersection(*(set(a.get(d, {})) & set(b.get(d, {})) for d in datasets)) if datasets else set()
    return {k: float(np.mean([math.log(a[d][k] / b[d][k]) for d in datasets])) for k in sorted(keys)
            if all(a[d][k] > 0 and b[d][k] > 0 for d in datasets)}


def _log_text(iv: Interval | None) -> str:
    """'-0.031 ± 0.020 (n=3 source seeds; ×0.97)': the mean log-ratio and the FID ratio it implies."""
    if iv is None:
        return "—"
    ci = f" ± {iv.half_width:.3f}" if iv.n >= 2 and math.isfinite(iv.half_width) else " (no CI)"
    mark = " *" if iv.n >= 2 and (iv.low > 0 or iv.high < 0) else ""
    return f"{iv.mean:+.3f}{ci} (n={iv.n} source seeds; ×{math.exp(iv.mean):.3f}){mark}"


def _transfer_diff(r: TransferRow) -> str:
    return _diff_text(Comparison(r.setting, r.diff, None, r.p_holm))


# The downstream task's measures of how well the fine-tuned model follows its condition (a
# ControlNet's): name -> (title, digits, higher is better). A task without them has none.
CONDITION_METRICS: dict[str, tuple[str, int, bool]] = {"condition_mse": ("condition MSE", 4, False),
                                                       "miou": ("mIoU", 3, True)}


def _excludes_zero(iv: Interval | None) -> bool:
    return iv is not None and iv.n >= 2 and math.isfinite(iv.half_width) and (iv.low > 0 or iv.high < 0)


def _seed_interval(by_src: dict[int, float]) -> Interval | None:
    return t_interval(list(by_src.values())) if by_src else None


@dataclass(frozen=True)
class SourceCheck:
    """A source setting's downstream difference from the clean η=0 source beside the source's own
    difference (the linked source results' `metrics.fid`, on the source's data) and beside how the
    fine-tuned models follow their condition: each per source seed, over the (source seed, seed)
    pairs both settings have, the downstream seeds of a source seed averaged within it; 95% t over
    source seeds. Whether a downstream FID difference is the source's, carried over, or a change in
    what fine-tuning does with it."""
    downstream: dict[int, float]  # source seed -> Δ mean downstream FID over the datasets
    source: dict[int, float]      # source seed -> the source's own ΔFID
    # metric -> (the datasets it is averaged over, source seed -> Δ of its mean over them)
    conditions: dict[str, tuple[tuple[str, ...], dict[int, float]]] = field(default_factory=dict)

    @property
    def excess(self) -> dict[int, float]:
        """source seed -> downstream change minus the source's own change."""
        return {k: v - self.source[k] for k, v in self.downstream.items() if k in self.source}

    def interval(self, which: str) -> Interval | None:
        if which in ("downstream", "source", "excess"):
            return _seed_interval(getattr(self, which))
        return _seed_interval(self.conditions[which][1]) if which in self.conditions else None

    @property
    def reading(self) -> str:
        """What the intervals say (95%, not a verdict): the downstream difference carried over from
        the source where it is resolved, the source's own change covers it, and condition following
        does not change."""
        d, x, c = self.interval("downstream"), self.interval("excess"), self.interval("condition_mse")
        if d is None or d.n < 2 or x is None or x.n < 2:
            return "fewer than two source seeds: no reading"
        if not _excludes_zero(d):
            return "the downstream difference is not resolved (its interval contains 0)"
        if _excludes_zero(x):
            return (f"the downstream change is {'larger' if x.mean > 0 else 'smaller'} than the source's own "
                    f"(downstream minus the source's change excludes 0): not the source's quality alone")
        if c is None or c.n < 2:
            return ("the downstream difference is within the source's own change (no condition metric here to "
                    "tell whether condition following changes)")
        if _excludes_zero(c):
            return ("the downstream FID difference is within the source's own change, but condition following "
                    "changes too (Δ condition MSE excludes 0)")
        return ("the downstream difference inherits the source's quality: the fine-tuned model's FID difference "
                "is the source's, not a change in how it learns the condition (intervals that contain 0, not a "
                f"test of equality: downstream minus the source's change lies in [{x.low:+.2f}, {x.high:+.2f}])")


def source_checks(settings: dict[Setting, dict[str, dict]], sources: dict[Setting, dict[str, dict]],
                  conditions: dict[str, dict[Setting, dict[str, dict]]], datasets: list[str]) -> dict[Setting, SourceCheck]:
    """Per source setting but the clean η=0 one: its SourceCheck. `settings` as `downstream` gives
    it; `sources` the same with the source runs' own FID (`downstream(..., of_source=True)`);
    `conditions` metric -> the same with that downstream metric; `datasets` those averaged over
    (a condition metric over those of them that have it)."""
    ref = next((st for st in settings if st.is_reference), None)
    if ref is None:
        return {}
    fid = {st: _pair_means(by_ds, datasets) for st, by_ds in settings.items()}
    src = {st: _pair_means(sources.get(st, {}), datasets) for st in settings}
    cond_means = {}
    for name, by_setting in conditions.items():
        ds = [d for d in datasets if any(d in by_ds for by_ds in by_setting.values())]
        if ds:
            cond_means[name] = (tuple(ds), {st: _pair_means(by_setting.get(st, {}), ds) for st in settings})

    def by_source(a: dict, b: dict, keys: set) -> dict[int, float]:
        return _by_source({k: a[k] - b[k] for k in sorted(keys) if k in a and k in b})

    out = {}
    for st in settings:
        if st == ref:
            continue
        shared = set(fid[st]) & set(fid[ref])  # the pairs the downstream difference is taken over
        out[st] = SourceCheck(by_source(fid[st], fid[ref], shared), by_source(src[st], src[ref], shared),
                              {name: (ds, d) for name, (ds, m) in cond_means.items()
                               if (d := by_source(m[st], m[ref], shared))})
    return out


def transfer_source_checks(rs: ResultSet, section) -> dict[Transfer, dict[Setting, SourceCheck]]:
    """transfer -> source setting -> its SourceCheck, from the results."""
    srcs = downstream(rs, section, of_source=True)
    conds = {name: downstream(rs, section, name) for name in CONDITION_METRICS}
    return {t: source_checks(settings, srcs.get(t, {}), {n: c.get(t, {}) for n, c in conds.items()},
                             averaged_datasets(settings))
            for t, settings in downstream(rs, section).items()}


def _iv_text(iv: Interval | None, digits: int = 2, n: bool = True) -> str:
    """'+0.58 ± 0.60 (n=3) *': mean ± 95% t half-width, * where the interval excludes 0."""
    if iv is None:
        return "—"
    ci = f" ± {iv.half_width:.{digits}f}" if iv.n >= 2 and math.isfinite(iv.half_width) else " (no CI)"
    return f"{iv.mean:+.{digits}f}{ci}" + (f" (n={iv.n})" if n else "") + (" *" if _excludes_zero(iv) else "")


def _per_seed(by_src: dict[int, float], digits: int = 2) -> str:
    return "/".join(f"{v:+.{digits}f}" for _, v in sorted(by_src.items()))


def _csv_interval(iv: Interval | None) -> tuple:
    if iv is None:
        return "", "", "", ""
    ci = iv.n >= 2 and math.isfinite(iv.half_width)
    return _g(iv.mean), _g(iv.low) if ci else "", _g(iv.high) if ci else "", iv.n


def source_check_text(c: SourceCheck, averaged: list[str]) -> str:
    """The note's numbers and its reading."""
    seeds = "/".join(str(k) for k in sorted(c.downstream))
    parts = [f"downstream ΔFID (mean over {', '.join(averaged)}) {_iv_text(c.interval('downstream'))} "
             f"({_per_seed(c.downstream)} by source seed {seeds})",
             f"the source's own ΔFID (its FID on its own data) {_iv_text(c.interval('source'))} "
             f"({_per_seed(c.source)})",
             f"downstream minus the source's own change {_iv_text(c.interval('excess'))} ({_per_seed(c.excess)})"]
    for name, (ds, d) in c.conditions.items():
        title, digits, _ = CONDITION_METRICS[name]
        parts.append(f"Δ {title} (mean over {', '.join(ds)}) {_iv_text(c.interval(name), digits)}")
    return "; ".join(parts) + f": {c.reading}"


def downstream_tables(rs: ResultSet) -> list[SimpleTable]:
    out = []
    items = rs.runs + rs.variants
    for section in sorted({r.section for r in items if r.data.family == FAMILY}):
        checks_of = transfer_source_checks(rs, section)
        for t, settings in downstream(rs, section).items():
            datasets, averaged = transfer_datasets(settings), averaged_datasets(settings)
            checks = checks_of.get(t, {})
            has_mse = any("condition_mse" in c.conditions for c in checks.values())
            rows, csv_rows = [], []
            for r in transfer_rows(settings, averaged):
                c = checks.get(r.setting)
                cells = [_mean_ci(list(settings[r.setting][d].values()), 2) if d in r.per_dataset else "—"
                         for d in datasets]
                rows.append([r.setting.label, " ".join(f"{a}/{b}" for a, b in sorted(r.mean)) or "—", *cells,
                             _mean_ci(list(r.mean.values()), 2) if r.mean else "—", _transfer_diff(r),
                             _log_text(r.log_diff), _iv_text(c.interval("source")) if c else "—",
                             _iv_text(c.interval("excess")) if c else "—",
                             *([_iv_text(c.interval("condition_mse"), 4) if c else "—"] if has_mse else [])])
                for d, iv in r.per_dataset.items():
                    csv_rows.append([*section, *t.section, t.method, t.config_hash, t.extra, r.setting.method,
                                     r.setting.config, r.setting.eta, r.setting.mode, d, _g(iv.mean), _g(iv.low),
                                     _g(iv.high), iv.n, "", "", "", "", "", "", *[""] * (4 * (3 + len(CONDITION_METRICS)))])
                if r.mean:
                    iv = t_interval(list(r.mean.values()))
                    csv_rows.append([*section, *t.section, t.method, t.config_hash, t.extra, r.setting.method,
                                     r.setting.config, r.setting.eta, r.setting.mode, "mean", _g(iv.mean), _g(iv.low),
                                     _g(iv.high), iv.n, _g(r.diff.mean) if r.diff else "",
                                     _g(r.p_holm) if r.p_holm is not None else "",
                                     *((_g(r.log_diff.mean), _g(r.log_diff.low), _g(r.log_diff.high), r.log_diff.n)
                                       if r.log_diff else ("", "", "", "")),
                                     *(x for which in ("downstream", "source", "excess", *CONDITION_METRICS)
                                       for x in _csv_interval(c.interval(which) if c else None))])
            task, version, profile = section
            out.append(SimpleTable(
                section_key_str(section),
                f"{task}-v{version}-{profile}-corruption-downstream-{t.section[0]}-{t.method}-{t.config_hash[:6]}",
                f"Downstream transfer of the pre-trained models: {t.label}, FID per dataset and averaged over them "
                f"(per source seed); Δ paired over source seeds with the clean η=0 source, ▼/▲ significant after Holm; "
                f"relative: the mean over the datasets of log(FID / the clean source's FID) per (source seed, seed), "
                f"averaged within each source seed, 95% t over source seeds, * where it excludes 0; the source's own "
                f"ΔFID (the linked source results' FID on their own data) and the downstream ΔFID minus it, per source "
                f"seed (downstream seeds averaged within it), 95% t over source seeds, * where it excludes 0"
                + ("; Δ condition MSE of the fine-tuned models, the same way" if has_mse else ""),
                ["Pre-training (source)", "Source/downstream seeds", *datasets,
                 "Mean FID over datasets" if averaged == datasets else f"Mean FID over {', '.join(averaged)}",
                 "Δ mean FID vs clean η=0 source (paired)",
                 "Mean log(FID / clean-source FID) (paired, clustered by source seed)",
                 "Source's own ΔFID vs clean η=0 source (paired by source seed)",
                 "Downstream ΔFID minus the source's own (per source seed)",
                 *(["Δ condition MSE vs clean η=0 source (per source seed)"] if has_mse else [])], rows,
                ["task", "task_version", "profile", "downstream_task", "downstream_version", "downstream_profile",
                 "method", "config_hash", "overrides", "source_method", "source_config", "eta_percent", "corruption",
                 "dataset", "fid_mean", "ci95_low", "ci95_high", "n", "fid_diff_vs_clean", "p_holm",
                 "log_fid_ratio_vs_clean", "log_ratio_ci95_low", "log_ratio_ci95_high", "log_ratio_n_source_seeds",
                 *(f"{name}_{x}" for name in ("fid_diff_by_source_seed", "source_fid_diff", "fid_diff_minus_source",
                                              *(f"{m}_diff" for m in CONDITION_METRICS))
                   for x in ("mean", "ci95_low", "ci95_high", "n_source_seeds"))],
                csv_rows,
                text_columns=2))  # the datasets' FIDs start at the third column
    return out


def _by_source(values: dict[tuple[int, int], float]) -> dict[int, float]:
    """(source seed, seed) -> value, averaged within each source seed: the unit of replication."""
    out: dict[int, list[float]] = {}
    for (src, _), v in values.items():
        out.setdefault(src, []).append(v)
    return {k: float(np.mean(v)) for k, v in sorted(out.items())}


def downstream_lines(rs: ResultSet, section) -> list[str]:
    """Per downstream task: one verdict per slightly corrupted source against the clean η=0 source
    (the paper's claim: slight corruption transfers better, no number), paired over (source seed,
    seed) pairs, Bonferroni over the rows; as notes, every source against the clean one, each beside
    the source's own change and the condition following (SourceCheck), and the dose-response."""
    lines = []
    sources = downstream(rs, section, of_source=True)
    conditions = {name: downstream(rs, section, name) for name in CONDITION_METRICS}
    for t, settings in downstream(rs, section).items():
        datasets, averaged = transfer_datasets(settings), averaged_datasets(settings)
        every = transfer_rows(settings, averaged)
        rows = [r for r in every if r.diff is not None]
        if not rows:
            continue
        ref = next((r for r in every if r.setting.is_reference), None)
        conf = adjusted_confidence(len(rows))
        partial = [d for d in datasets if d not in averaged]
        for r in rows:
            if not (r.setting.method == REFERENCE and r.setting.mode == "fixed" and r.setting.eta in SLIGHT):
                continue
            shared = set(r.mean) & set(ref.mean)  # pair by (source seed, seed), then cluster by source seed
            v, iv, small = _claim_verdict(_by_source({k: r.mean[k] for k in shared}),
                                   _by_source({k: ref.mean[k] for k in shared}), conf, None, -1,
                                   "the paper's direction (slight corruption transfers better; no number reported)",
                                   unit="source seeds")
            detail = (f"mean FID over {', '.join(averaged)} {iv.mean:+.2f} ± {iv.half_width:.2f} ({100 * conf:.1f}% "
                      f"t interval, Bonferroni over {len(rows)} sources, n={iv.n} source seeds, the downstream seeds "
                      f"of each averaged within it{small})") if iv else "fewer than two shared source seeds"
            lines.append(f"- **{section_key_str(section)}**: Downstream, {t.label}: source {r.setting.label} against "
                         f"the clean η=0 source, ΔFID: {v}. {detail}.")
        lines.append(f"- {section_key_str(section)}: Downstream, {t.label}, every source (a note; mean FID over the "
                     f"datasets vs the clean η=0 source, paired, 95% t, ▼/▲ Holm): "
                     + "; ".join(f"{r.setting.label}: {_transfer_diff(r)}, relative: mean log(FID / clean-source FID) "
                                 f"{_log_text(r.log_diff)}" for r in rows)
                     + (f"; {', '.join(partial)} are run from fewer source seeds so far and are in the table, "
                        f"not in this mean." if partial else "."))
        checks = source_checks(settings, sources.get(t, {}), {n: c.get(t, {}) for n, c in conditions.items()},
                               averaged)
        for r in rows:
            if r.setting in checks:
                lines.append(f"- {section_key_str(section)}: Downstream beside the source's own change ({t.label}; "
                             f"a note, outside the Bonferroni family): source {r.setting.label} against the clean "
                             f"η=0 source, per source seed (the downstream seeds of each averaged within it), 95% t "
                             f"over source seeds, * where it excludes 0: "
                             f"{source_check_text(checks[r.setting], averaged)}.")
        sweep = {r.setting.eta: r.mean for r in every if is_sweep_point(r.setting, settings)}
        slope = _slope(sweep)
        if slope is not None:
            iv, etas = slope
            lines.append(f"- {section_key_str(section)}: Downstream dose-response ({t.label}; a note): "
                         f"{_trend(iv)}; the mean downstream FID moves by {_per10(iv)} per 10 points of the "
                         f"source's η (least-squares slope over η = {', '.join(f'{e:g}' for e in etas)}%, one "
                         f"slope per source/downstream seed pair, 95% t interval over n={iv.n}).")
    return lines


# -- figures ------------------------------------------------------------------------------------

def _fid_is_figure(title: str, panel):
    """A draw function: one panel per metric (FID, IS), `panel(ax, key)` filling each, one legend."""
    def draw():
        from bench.report import plotting as F

        fig, axes = F.grid(2, 6.5)
        for ax, key in zip(axes, ("fid", "is")):
            panel(ax, key)
        F.legend(fig, axes)
        fig.suptitle(title)
        return fig

    return draw


def figures(section, items: list[Loaded], transfers: dict | None = None):
    from bench.report import plotting as F

    g = groups(items)
    if not g:
        return []
    name = section_key_str(section)
    slug = F.slug(section)
    specs = []
    clean = {st: seeds for st, seeds in g.items() if is_sweep_point(st, g)}
    scales = sorted({k for seeds in g.values() for raw in seeds.values()
                     for k in raw.get("guidance", {}).get("grid", {})}, key=float)

    if clean and scales:
        def draw_guidance():
            import matplotlib.pyplot as plt

            fig, axes = F.grid(len(METRICS), 8)
            cmap = plt.get_cmap("viridis")
            etas = sorted({st.eta for st in clean})
            for ax, key in zip(axes, METRICS):
                for i, st in enumerate(sorted(clean, key=lambda s: s.eta)):
                    xs, means, halves = [], [], []
                    for gs in scales:
                        vals = _values(clean[st], key, gs)
                        if vals:
                            iv = t_interval(list(vals.values()))
                            xs.append(float(gs))
                            means.append(iv.mean)
                            halves.append(iv.half_width if iv.n >= 2 else 0.0)
                    if xs:
                        colour = cmap(etas.index(st.eta) / max(1, len(etas) - 1))
                        ax.errorbar(xs, means, yerr=halves, color=colour, marker="o", ms=3, lw=1, capsize=2,
                                    label=f"η={st.eta:g}% (n={len(clean[st])})")
                ax.set_title(METRICS[key][0])
                ax.set_xlabel("guidance scale")
            F.legend(fig, axes)
            fig.suptitle(f"Every metric against guidance scale, per corruption ratio (clean method) — {name}")
            return fig

        specs.append(F.FigureSpec(f"{slug}-corruption-guidance", name,
                                  "Every metric against guidance scale per corruption ratio η", draw_guidance))

    if len({st.eta for st in clean}) >= 2:
        others = {st: seeds for st, seeds in g.items() if st.method != REFERENCE and st.eta == 0 and not st.extra}

        def eta_panel(ax, key):
            pts = sorted(clean, key=lambda s: s.eta)
            ivs = [t_interval(list(_values(clean[st], key).values())) for st in pts]
            ax.errorbar([st.eta for st in pts], [iv.mean for iv in ivs],
                        yerr=[iv.half_width if iv.n >= 2 else 0 for iv in ivs], marker="o", ms=3, capsize=2,
                        color=method_colour(REFERENCE), label=f"clean, labels corrupted at η (n={ivs[0].n})")
            for st, seeds in g.items():  # corruption redrawn at every draw, beside the fixed draw
                vals = list(_values(seeds, key).values())
                if st.method == REFERENCE and st.mode == "random" and not st.config and not st.extra and vals:
                    iv = t_interval(vals)
                    ax.errorbar([st.eta], [iv.mean], yerr=[iv.half_width if iv.n >= 2 else 0], ls="none",
                                marker="D", ms=5, capsize=2, mfc="none", color=method_colour(REFERENCE),
                                label=f"{st.label} (n={iv.n})")
            # Methods trained on clean data are one point each; a line at their level, with its
            # band, reads against every η without pretending they have one.
            for j, (st, seeds) in enumerate(sorted(others.items(), key=lambda kv: kv[0].label)):
                vals = list(_values(seeds, key).values())
                if vals:
                    iv = t_interval(vals)
                    colour = method_colour(st.method)
                    ax.axhline(iv.mean, color=colour, ls=("--", ":", "-.")[j % 3], lw=1,
                               label=f"{st.label} (n={iv.n})")
                    if iv.n >= 2:
                        ax.axhspan(iv.low, iv.high, color=colour, alpha=0.1, lw=0)
            ax.set_xlabel("corruption ratio η (%)")
            ax.set_title(f"{METRICS[key][0]} at the best guidance scale")

        specs.append(F.FigureSpec(f"{slug}-corruption-eta", name,
                                  "FID and IS at the best guidance against η (CEP and other methods at η=0)",
                                  _fid_is_figure(f"FID and IS against η; methods on clean data beside η=0 — {name}",
                                                 eta_panel)))

    tracked = {st: seeds for st, seeds in clean.items() if st.eta in (0.0, 2.5)
               and all(raw.get("tracking") for raw in seeds.values())}
    if len(tracked) == 2:
        def tracked_panel(ax, key):
            for st, seeds in sorted(tracked.items(), key=lambda kv: kv[0].eta):
                curves = [np.asarray(raw["tracking"]["curves"][key], dtype=float) for raw in seeds.values()
                          if key in raw["tracking"]["curves"]]
                if not curves:
                    continue
                steps = sorted(set.intersection(*(set(c[:, 0].tolist()) for c in curves)))
                ys = [np.interp(steps, c[:, 0], c[:, 1]) for c in curves]
                mean, lo, hi = F.mean_band(ys)
                ls = "-" if st.eta == 0 else "--"
                ax.plot(steps, mean, ls=ls, color="black" if st.eta == 0 else "#d62728", lw=1.2,
                        label=f"η={st.eta:g}% (n={len(curves)})")
                ax.fill_between(steps, lo, hi, color="black" if st.eta == 0 else "#d62728", alpha=0.15, lw=0)
            ax.set_xlabel("pre-training step")
            ax.set_title(f"tracked {METRICS[key][0]}")

        specs.append(F.FigureSpec(f"{slug}-corruption-tracked", name,
                                  "FID and IS over pre-training iterations, η=0 vs η=2.5%",
                                  _fid_is_figure(f"FID and IS over pre-training, clean vs η=2.5% — {name}",
                                                 tracked_panel)))
    for t, settings in (transfers or {}).items():
        specs.append(_downstream_figure(section, t, settings))
    return specs


def _downstream_figure(section, t: Transfer, settings):
    """Downstream FID against the source's η, one panel per dataset and one for the mean over them;
    sources that are not clean-with-fixed-corruption (CEP, random corruption) as labelled points."""
    from bench.report import plotting as F

    datasets, averaged = transfer_datasets(settings), averaged_datasets(settings)
    rows = {r.setting: r for r in transfer_rows(settings, averaged)}
    name = section_key_str(section)

    def draw():
        fig, axes = F.grid(len(datasets) + 1, 8)
        for ax, d in zip(axes, [*datasets, None]):
            pts = []
            for st, by_ds in settings.items():
                vals = list(rows[st].mean.values()) if d is None else list(by_ds.get(d, {}).values())
                if vals:
                    pts.append((st, t_interval(vals)))
            clean = sorted((p for p in pts if is_sweep_point(p[0], settings)), key=lambda p: p[0].eta)
            if clean:
                ax.errorbar([st.eta for st, _ in clean], [iv.mean for _, iv in clean],
                            yerr=[iv.half_width if iv.n >= 2 else 0 for _, iv in clean], marker="o", ms=3,
                            capsize=2, color=method_colour(REFERENCE), label=f"clean source (n={clean[0][1].n})")
            for j, (st, iv) in enumerate(p for p in pts if p not in clean):
                ax.errorbar([st.eta], [iv.mean], yerr=[iv.half_width if iv.n >= 2 else 0], ls="none",
                            marker="sDv^<>"[j % 6], ms=5, capsize=2, color=method_colour(st.method),
                            label=f"{st.label} (n={iv.n})")
            ax.set_title(f"{d} FID" if d else "mean FID over datasets" if averaged == datasets
                         else f"mean FID over {len(averaged)} datasets run from every source seed")
            ax.set_xlabel("source corruption ratio η (%)")
        F.legend(fig, axes)
        fig.suptitle(f"Downstream: {t.label}, from each pre-trained model — {name}")
        return fig

    return F.FigureSpec(f"{F.slug(section)}-corruption-downstream-{t.section[0]}-{t.method}-{t.config_hash[:6]}", name,
                        f"Downstream FID per source η ({t.method} on {t.section[0]})", draw)


# -- its LEADERBOARD section --------------------------------------------------------------------

def section(rs: ResultSet, tables: list[SimpleTable], links: dict, reported) -> str:
    """The pre-training corruption study: its answer first, then its table (every setting at its best
    guidance scale) and its figures; the metric-by-guidance grid is in the table's CSV. The paper's
    numbers are quoted as reported, at their own scale, never in the table's columns."""
    paper = [r for r in reported if r.task in {t.section.split("@")[0] for t in tables}]
    quoted = ["", "Reported by the paper, at full scale and not comparable with these numbers: " + "; ".join(
        f"{r.method} {r.metric.upper()} {r.value:g} on {r.dataset} {r.mark} ({r.source})" for r in paper) + "."] \
        if paper else []
    return study_markdown(
        "Pre-training under label corruption (corruption-sweep)",
        "Does slight label corruption in pre-training beat clean data, does severe corruption hurt, and does "
        "CEP match the benefit without corrupting anything (Chen et al. 2024)? Answers from the results below:",
        verdict_lines(rs, reported), quoted, tables, links, "-corruption-")


# Its runs are all sweep points of eta: the generic figures are drawn, then its own in place of the
# generic sweep figures.
REPORT = StudyReport(family=FAMILY, order=10, tables=tables, section=section,
                     figures=lambda section, items, rs: figures(section, items, downstream(rs, section)),
                     generic_figures=("convergence", "ewc", "efficiency", "ablation", "chain-of-forgetting"))
