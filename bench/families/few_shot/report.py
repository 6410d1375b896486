"""The few-shot corruption-stage study's tables, verdict and figures (Wu et al., seed 000; family
few-shot), from its run files.

Each run is one (method, subject, N, seed) with its tracked fidelity curves and the detected
corruption stage (`tracking.events`: the task's `dip` rule on `dino`). Per method and N the
tables give, over subjects x seeds: how many runs show a stage, its onset, duration and depth,
and the final DINO, CLIP-I, CLIP-T, LPIPS and CLIP-IQA as mean ± 95% Student-t half-width. Every
run also has a depth that needs no threshold, the largest drop of DINO below its running maximum
("drawdown"); the paired comparisons of a Bayesian method with its base method (`bnn+dreambooth`
with `dreambooth`, `bnn+lora` with `lora`) use it and the final DINO, paired by (subject, N, seed).
"""

from __future__ import annotations

import numpy as np

from bench.report.colours import method_colour
from bench.report.extras import SimpleTable
from bench.report.load import Loaded, section_key_str
from bench.report.study import StudyReport, study_markdown
from bench.stats import small_n_text, t_interval
from bench.verdicts import adjusted_confidence, classify

FAMILY = "few-shot"
MEASURES = ("dino", "clip_i", "clip_t", "lpips", "clip_iqa")
BAYES = ("bnn", "bnn-norm")
STUDY_KEYS = {"params.num_images", "num_images"}  # sweep keys of the main study; others are ablations


def _n(raw: dict) -> int:
    return int((raw.get("subject") or {}).get("num_images") or raw["sweep"].get("params.num_images", 0))


# The BNN fields a secondary sweep may vary (at N = 1 in scripts/reproduce_tiny_fewshot.sh), with
# the axis label of its figure. The study's own run (not swept) is the sweep's reference point.
BNN_SWEEPS = {"kl_weight": "KL weight lambda (the study's runs: 0)",
              "sigma_init": "sigma_init (swept: fraction of the layer's weight RMS; study: 0.01 absolute)"}


def _swept(raw: dict) -> tuple[str, float] | None:
    """(field, value) of a BNN-sweep run (BNN_SWEEPS), else None."""
    for k, v in (raw.get("sweep") or {}).items():
        field = k.rsplit(".", 1)[-1]
        if field in BNN_SWEEPS:
            return field, float(v)
    return None


def runs_by(items: list[Loaded], swept: str | None = None) -> dict[str, dict[int, dict[tuple, dict]]]:
    """method -> N -> (subject, seed) -> raw result. `swept` (a BNN_SWEEPS field): that sweep's runs
    instead, keyed method -> N -> (subject, seed, value)."""
    out: dict = {}
    for r in items:
        d = r.data
        if d.family != FAMILY or d.budget_override:
            continue
        raw = d.model_dump(mode="json")
        extra = set(d.sweep) - STUDY_KEYS
        overrides = set(d.task_overrides or {}) - STUDY_KEYS
        if overrides or len(extra) > 1:
            continue
        sw = _swept(raw)
        if (swept is None and extra) or (swept is not None and (sw is None or sw[0] != swept)):
            continue
        key = (d.dataset, d.seed, sw[1]) if swept else (d.dataset, d.seed)
        out.setdefault(d.method, {}).setdefault(_n(raw), {})[key] = raw
    return out


def curve(raw: dict, metric: str = "dino") -> np.ndarray:
    return np.array(((raw.get("tracking") or {}).get("curves") or {}).get(metric, []), dtype=float).reshape(-1, 2)


def drawdown(raw: dict) -> float:
    """The largest drop of the DINO curve below its running maximum (0 for a monotone curve)."""
    c = curve(raw)
    if not len(c):
        return float("nan")
    v = c[:, 1]
    return float(np.max(np.maximum.accumulate(v) - v))


def stage(raw: dict) -> dict | None:
    for e in (raw.get("tracking") or {}).get("events", []):
        if e.get("rule") == "dip" and e.get("metric") == "dino":
            return e
    return None


def calibrate(g: dict, section) -> tuple[dict, dict | None]:
    """The runs with each `dip` event on `dino` re-detected by the null-calibrated dip rule of the
    committed calibration (bench/calibration.py), when there is one: margin = the null quantile for
    the curve's length (5% of noise-only curves fire) times the subject's measured DINO noise sd,
    onset and recovery each held for two evaluations (bench.tracking_rules.dip_with_hold). The
    declared event stays under `declared`. Returns (runs, calibration or None)."""
    from bench.calibration import dip_rule, load_calibration
    from bench.tracking_rules import dip_with_hold

    cal = load_calibration(*section)
    if cal is None:
        return g, None
    out: dict = {}
    for method, by_n in g.items():
        for n, runs in by_n.items():
            for key, raw in runs.items():
                e = stage(raw)
                c = curve(raw)
                rule = dip_rule(cal, key[0], "dino", len(c)) if (e is not None and len(c)) else None
                if rule is None:
                    out.setdefault(method, {}).setdefault(n, {})[key] = raw
                    continue
                ev = dip_with_hold([(int(s), float(v)) for s, v in c], "dino", rule["margin"], rule["hold"],
                                   e.get("direction", "higher_is_better") if "direction" in e else "higher_is_better")
                ev.update(calibrated=True, noise_sd=rule["sd"], declared=e)
                events = [ev, *(x for x in raw["tracking"]["events"] if x is not e)]
                out.setdefault(method, {}).setdefault(n, {})[key] = {**raw, "tracking": {**raw["tracking"],
                                                                                        "events": events}}
    return out, cal


def base_of(method: str) -> str | None:
    parts = method.split("+")
    rest = [p for p in parts if p not in BAYES]
    return "+".join(rest) if rest and len(rest) < len(parts) else None


def _cell(vals, digits: int = 3) -> str:
    vals = [v for v in vals if v is not None and np.isfinite(v)]
    if not vals:
        return "–"
    iv = t_interval(vals)
    return (f"{iv.mean:.{digits}f} ± {iv.half_width:.{digits}f}" if iv.n >= 2 else f"{iv.mean:.{digits}f}") + f" (n={iv.n})"


def _order(g: dict) -> list[str]:
    """Base methods first, each followed by its Bayesian variants."""
    def key(m):
        b = base_of(m)
        return (b or m, b is not None, m)
    return sorted(g, key=key)


def paired(g: dict, method: str, n: int | None, value) -> list[float]:
    """value(method run) - value(base run) over the (subject, seed) pairs both have, at N = n
    (every N when n is None)."""
    base = base_of(method)
    if base is None or base not in g:
        return []
    out = []
    for k in sorted(g[method]) if n is None else [n]:
        a, b = g[method].get(k, {}), g[base].get(k, {})
        out += [value(a[s]) - value(b[s]) for s in sorted(set(a) & set(b))]
    return [v for v in out if np.isfinite(v)]


def _final(metric: str):
    return lambda raw: float(raw["metrics"][metric])


def tables(rs) -> list[SimpleTable]:
    out = []
    items = rs.runs + rs.variants
    for section in sorted({r.section for r in items if r.data.family == FAMILY}):
        g = runs_by([r for r in items if r.section == section])
        if not g:
            continue
        g, cal = calibrate(g, section)
        name = section_key_str(section)
        slug = f"{section[0]}-v{section[1]}-{section[2]}"
        header = ["Method", "N", "Runs", "Stage found (calibrated rule)" if cal else "Stage found (declared rule)", "Onset (step)", "Duration (steps)", "Depth (dip rule)",
                  "Drawdown", "DINO", "CLIP-I", "CLIP-T", "LPIPS", "CLIP-IQA"]
        rows, csv_rows = [], []
        for method in _order(g):
            for n in sorted(g[method]):
                runs = list(g[method][n].values())
                events = [stage(r) or {} for r in runs]
                hit = [e for e in events if e.get("reached")]
                unrecovered = sum(1 for e in hit if not e.get("recovered"))
                finals = {m: [r["metrics"].get(m) for r in runs] for m in MEASURES}
                dd = [drawdown(r) for r in runs]
                rows.append([method, str(n), str(len(runs)), f"{len(hit)}/{len(runs)}",
                             _cell([e["onset"] for e in hit], 0),
                             _cell([e["duration"] for e in hit if e.get("recovered")], 0)
                             + (f", {unrecovered} not recovered" if unrecovered else ""),
                             _cell([e["depth"] for e in hit]), _cell(dd),
                             *(_cell(finals[m]) for m in MEASURES)])
                csv_rows.append([method, n, len(runs), len(hit), unrecovered,
                                 *(_mean([e[k] for e in hit if e.get(k) is not None]) for k in ("onset", "duration", "depth")),
                                 _mean(dd), *(_mean(finals[m]) for m in MEASURES)])
        out.append(SimpleTable(section=name, slug=f"{slug}-fewshot-stage",
                               title="Corruption stage and final fidelity per method and N (subjects x seeds)",
                               header=header, rows=rows,
                               csv_header=["method", "n_images", "runs", "stage_found", "not_recovered", "onset_mean",
                                           "duration_mean", "depth_mean", "drawdown_mean",
                                           *(f"{m}_mean" for m in MEASURES)], csv_rows=csv_rows))
        out.append(_paired_table(name, slug, g))
    return out


def _mean(vals) -> float | str:
    vals = [v for v in vals if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else ""


def _paired_table(name: str, slug: str, g: dict) -> SimpleTable:
    header = ["Method", "Base", "N", "Pairs", "Δ drawdown", "Δ DINO", "Δ CLIP-T", "Δ LPIPS", "Δ CLIP-IQA"]
    rows, csv_rows = [], []
    for method in _order(g):
        base = base_of(method)
        if base is None or base not in g:
            continue
        for n in [*sorted(g[method]), None]:
            dd = paired(g, method, n, drawdown)
            if not dd:
                continue
            deltas = {m: paired(g, method, n, _final(m)) for m in ("dino", "clip_t", "lpips", "clip_iqa")}
            label = "all" if n is None else str(n)
            rows.append([method, base, label, str(len(dd)), _cell(dd), *(_cell(deltas[m]) for m in deltas)])
            csv_rows.append([method, base, label, len(dd), _mean(dd), *(_mean(deltas[m]) for m in deltas)])
    return SimpleTable(section=name, slug=f"{slug}-fewshot-bnn-paired",
                       title="Bayesian layers against their base method, paired by (subject, N, seed)",
                       header=header, rows=rows, csv_header=["method", "base", "n_images", "pairs", "d_drawdown",
                                                             "d_dino", "d_clip_t", "d_lpips", "d_clip_iqa"],
                       csv_rows=csv_rows)


# The paper (Wu et al., seed 000) states directions, no numbers: Bayesian layers mitigate the
# corruption stage (smaller dip) and keep fidelity (final DINO not lower). reference/reported.yaml has
# no effect size for this study, so a verdict can support or contradict the direction, and an
# inconclusive one cannot name a number of subjects that would decide it.
PAPER_DIRECTION = {"drawdown": (-1, "the paper's direction (Bayesian layers shrink the dip; no number reported)"),
                   "dino": (+1, "the paper's direction (Bayesian layers keep fidelity; no number reported)"),
                   "lpips": (+1, "the paper's direction (Bayesian layers keep diversity: LPIPS between samples "
                                 "higher; no number reported)")}
CLAIMS = (("drawdown", drawdown, "Δ drawdown"), ("dino", _final("dino"), "Δ final DINO"),
          ("lpips", _final("lpips"), "Δ final LPIPS diversity"))


def by_subject(g: dict, method: str, value) -> dict[str, float]:
    """subject -> mean over its (N, seed) pairs of value(method run) - value(base run): the unit of
    replication is the subject, since runs that share a subject are not independent."""
    base = base_of(method)
    out: dict[str, list[float]] = {}
    if base is None or base not in g:
        return {}
    for n in sorted(g[method]):
        a, b = g[method].get(n, {}), g[base].get(n, {})
        for k in sorted(set(a) & set(b)):
            d = value(a[k]) - value(b[k])
            if np.isfinite(d):
                out.setdefault(k[0], []).append(d)
    return {subj: float(np.mean(v)) for subj, v in sorted(out.items())}


def verdict_lines(rs) -> list[str]:
    """Bayesian layers against their base method: one verdict (bench/verdicts.py) per (method,
    measure), the per-subject mean of the paired differences as the unit, Bonferroni over the
    section's claims."""
    from bench.preconditions import check, out_of_regime

    lines = []
    items = rs.runs + rs.variants
    for section in sorted({r.section for r in items if r.data.family == FAMILY}):
        g = runs_by([r for r in items if r.section == section])
        name = section_key_str(section)
        declared = check(*section, [r for r in items if r.section == section])
        lines += [f"- {name}: Precondition {o.line()[2:]}" for o in declared]
        pairs = [m for m in _order(g) if base_of(m) is not None and base_of(m) in g]
        conf = adjusted_confidence(len(CLAIMS) * len(pairs))
        for method in pairs:
            base = base_of(method)
            n_pairs = len(paired(g, method, None, drawdown))
            for key, value, label in CLAIMS:
                subj = by_subject(g, method, value)
                sign, text = PAPER_DIRECTION[key]
                unmet = out_of_regime(declared, method)
                if len(subj) < 2:
                    v = classify(float("nan"), float("nan"), paper_effect=None, paper_sign=sign, paper_text=text,
                                 unit="subjects", out_of_regime=unmet)
                    lines.append(f"- **{name}**: {method} against {base}, {label}: {v}.")
                    continue
                iv = t_interval(list(subj.values()), conf)
                v = classify(iv.low, iv.high, paper_effect=None, paper_sign=sign, paper_text=text, sd=iv.std,
                             n=iv.n, unit="subjects", fmt="+.3f", alpha=1 - conf, out_of_regime=unmet)
                lines.append(f"- **{name}**: {method} against {base}, {label}: {v}. Mean {iv.mean:+.3f} ± "
                             f"{iv.half_width:.3f} ({100 * conf:.1f}% t interval, Bonferroni over {len(CLAIMS) * len(pairs)} "
                             f"claims; n={iv.n} subjects: the {n_pairs} pairs of (subject, N, seed) averaged within "
                             f"each subject{small_n_text(list(subj.values()), conf, sign)}).")
        lines += sweep_lines(name, g, [r for r in items if r.section == section])
    return lines


def sweep_lines(name: str, g: dict, items: list) -> list[str]:
    """A BNN sweep (BNN_SWEEPS) against the study's own run of the same method and N, paired by
    (subject, seed) and averaged within each subject: secondary and descriptive (95% t interval
    over subjects, outside the verdicts' Bonferroni family), one line per swept value."""
    lines = []
    for field in BNN_SWEEPS:
        for method, by_n in sorted(runs_by(items, swept=field).items()):
            for n, runs in sorted(by_n.items()):
                study = g.get(method, {}).get(n, {})
                for value in sorted({k[2] for k in runs}):
                    parts = []
                    for label, fn in (("Δ drawdown", drawdown), ("Δ final DINO", _final("dino")),
                                      ("Δ final LPIPS", _final("lpips"))):
                        per: dict[str, list[float]] = {}
                        for (subject, seed, v), raw in runs.items():
                            if v == value and (subject, seed) in study:
                                per.setdefault(subject, []).append(fn(raw) - fn(study[(subject, seed)]))
                        means = [float(np.mean(x)) for x in per.values()]
                        if len(means) >= 2:
                            iv = t_interval(means)
                            parts.append(f"{label} {iv.mean:+.3f} ± {iv.half_width:.3f}")
                        elif means:
                            parts.append(f"{label} {means[0]:+.3f} (one subject)")
                    if parts:
                        lines.append(f"- {name}: {method} at N = {n} with {field} = {value:g} against the study's "
                                     f"run (secondary sweep, paired by subject and seed, 95% t interval over "
                                     f"{len(per)} subjects): " + "; ".join(parts) + ".")
    return lines


STAGE_CLAIM = "the paper's direction (a corruption stage: fidelity dips below its best beyond noise; no number reported)"


def _sd(cal: dict | None, subject: str) -> float | None:
    from bench.calibration import noise_sd

    return noise_sd(cal, subject, "dino") if cal else None


def excess_drawdown(runs: dict, cal: dict | None) -> dict[str, float]:
    """subject -> drawdown of its seed-averaged DINO curve minus the median drawdown that averaging
    as many noise-only curves of that length at the subject's measured noise sd gives (simulated):
    > 0 where the mean curve dips more than noise does. The subject is the unit."""
    from bench.curve_stats import drawdown as dd, drawdown_null, mean_curve

    by_subject: dict[str, list] = {}
    for (subject, _), raw in runs.items():
        if len(curve(raw)):
            by_subject.setdefault(subject, []).append(curve(raw))
    out = {}
    for subject, curves in sorted(by_subject.items()):
        sd = _sd(cal, subject)
        mc = mean_curve(curves)
        if sd is None or mc is None:
            continue
        out[subject] = dd(mc[1]) - float(np.median(drawdown_null(len(mc[1]), sd, len(curves))))
    return out


def _below(iv) -> str:
    """What an excess drawdown wholly below 0 does and does not say."""
    if not iv.high < 0:
        return ""
    return (" Below 0: the averaged curves dip less than curves of independent evaluation noise alone would. "
            "Tracked evaluations share their sampling seeds, so their jitter is smaller than the independent "
            "re-evaluations the null is calibrated on: the null is conservative, and what is ruled out is a stage "
            "as deep as one evaluation's noise, not every dip.")


def stage_answer(rs) -> list[str]:
    """Per base method: does its DINO curve go through a corruption stage beyond evaluation noise?
    One verdict (bench/verdicts.py) per method on the excess drawdown of each subject's
    seed-averaged curve over the noise null (subjects as units, N averaged within a subject,
    Bonferroni over the section's methods), with the group-level test of the curve averaged over
    all runs of each N and the calibrated rule's counts as notes."""
    from bench.curve_stats import drawdown as dd, drawdown_null, mean_curve
    from bench.preconditions import check, out_of_regime

    out = []
    items = rs.runs + rs.variants
    for section in sorted({r.section for r in items if r.data.family == FAMILY}):
        g0 = runs_by([r for r in items if r.section == section])
        g, cal = calibrate(g0, section)
        name = section_key_str(section)
        declared = check(*section, [r for r in items if r.section == section])
        if cal is None:  # a new task version starts without one: said once, and the declared rule is used
            out.append(f"- {name}: no calibration committed for this task version (calibration/{section[0]}@v"
                       f"{section[1]}/{section[2]}.json; `bench calibrate`): stages by the task's declared dip rule, "
                       f"no noise null to test drawdowns against.")
        bases = [m for m in _order(g) if base_of(m) is None]
        conf = adjusted_confidence(len(bases))
        for method in bases:
            per_subject: dict[str, list[float]] = {}
            notes = []
            for n in sorted(g[method]):
                runs = g[method][n]
                for subj, x in excess_drawdown(runs, cal).items():
                    per_subject.setdefault(subj, []).append(x)
                events = [stage(r) or {} for r in runs.values()]
                hit = [e for e in events if e.get("reached")]
                rec = sum(1 for e in hit if e.get("recovered"))
                mc = mean_curve([curve(r) for r in runs.values() if len(curve(r))])
                sds = [v for v in (_sd(cal, k[0]) for k in runs) if v is not None]
                text = f"N={n}: calibrated rule fires in {len(hit)}/{len(runs)} runs ({rec} recover)" if cal else \
                    f"N={n}: declared rule fires in {len(hit)}/{len(runs)} runs"
                if hit:
                    steps = [int(p[0]) for p in curve(next(iter(runs.values())))]
                    idx = [steps.index(e["onset"]) for e in hit if e["onset"] in steps]
                    if idx:
                        text += f", onset at evaluation {np.mean(idx):.1f} of {len(steps) - 1} on average"
                if mc is not None and sds:
                    obs = dd(mc[1])
                    null = drawdown_null(len(mc[1]), float(np.sqrt(np.mean(np.square(sds)))), len(runs))
                    text += (f"; drawdown of the curve averaged over its {len(runs)} runs {obs:.3f}, noise null "
                             f"median {np.median(null):.3f} (p = {np.mean(null >= obs):.3f})")
                notes.append(text)
            vals = [float(np.mean(v)) for v in per_subject.values()]
            unmet = out_of_regime(declared, method)
            if len(vals) < 2:
                v = classify(float("nan"), float("nan"), paper_effect=None, paper_sign=+1, paper_text=STAGE_CLAIM,
                             unit="subjects", out_of_regime=unmet)
                why = "" if cal else " (no calibration committed: no noise null to test against)"
                out.append(f"- **{name}**: {method}, corruption stage beyond noise: {v}{why}.")
            else:
                iv = t_interval(vals, conf)
                v = classify(iv.low, iv.high, paper_effect=None, paper_sign=+1, paper_text=STAGE_CLAIM, sd=iv.std,
                             n=iv.n, unit="subjects", fmt="+.3f", alpha=1 - conf, out_of_regime=unmet)
                out.append(f"- **{name}**: {method}, corruption stage beyond noise (excess drawdown of each subject's "
                           f"seed-averaged DINO curve over its noise null, averaged over N): {v}. Mean "
                           f"{iv.mean:+.3f} ± {iv.half_width:.3f} ({100 * conf:.1f}% t interval, Bonferroni over "
                           f"{len(bases)} methods, n={iv.n} subjects{small_n_text(vals, conf, +1)}).{_below(iv)}")
            out.append(f"- {name}: {method}: " + "; ".join(notes) + ".")
    return out


def bnn_check_lines(rs) -> list[str]:
    """Did the Bayesian layers do anything? Per section and BNN method, from what each run records
    (`training.method_diagnostics`, baselines/bnn.py): its sigma after training against its start,
    and the loss change that sampling the weights makes on the last batch. A method whose sigma
    never moved, or whose sampled weights leave the loss unchanged, is flagged. Whether sampling
    moves the loss enough for BNN's claim to be tested is a declared precondition of the task
    (tasks/fewshot-corruption.yaml, `bnn-perturbs`), which gates the verdicts."""
    out = []
    items = rs.runs + rs.variants
    for section in sorted({r.section for r in items if r.data.family == FAMILY}):
        name = section_key_str(section)
        by_method: dict[str, list[dict | None]] = {}
        for r in items:
            if r.section != section or "bnn" not in r.data.method.split("+")[0]:
                continue
            raw = r.data.model_dump(mode="json")
            diag = (raw.get("training") or {}).get("method_diagnostics") or {}
            part = r.data.method.split("+")[0]
            sw = _swept(raw)  # a sweep's runs are checked apart from the study's
            label = r.data.method + (f" ({sw[0]} = {sw[1]:g})" if sw else "")
            by_method.setdefault(label, []).append(diag.get(part) if part in diag else None)
        for method, diags in sorted(by_method.items()):
            have = [d for d in diags if d and d.get("sigma_final")]
            if not have:
                out.append(f"- {name}: {method}: BNN check: no run records its sigma or loss change "
                           f"(`training.method_diagnostics`; results from before task v2).")
                continue
            moved = sum(1 for d in have if d.get("sigma_changed"))
            change = [float(d["loss_change"]) for d in have]
            s0 = np.mean([d["sigma_initial"]["mean"] for d in have if d.get("sigma_initial")])
            s1 = np.mean([d["sigma_final"]["mean"] for d in have])
            rel = [d["sigma_final"]["relative_to_weight_rms"] for d in have
                   if d["sigma_final"].get("relative_to_weight_rms") is not None]
            rel_loss = [float(d["loss_change"]) / float(d["loss_mean_weights"]) for d in have
                        if d.get("loss_mean_weights")]
            flag = "" if moved == len(have) and all(abs(c) > 1e-7 for c in change) else \
                " **Flag: in some runs BNN did nothing measurable (sigma unchanged or no loss change).**"
            out.append(f"- {name}: {method}: BNN check over {len(have)} of {len(diags)} runs: sigma moved in "
                       f"{moved}; mean sigma {s0:.3g} at the start, {s1:.3g} after training ({100 * (s1 / s0 - 1):+.2f}%)"
                       + (f", {np.mean(rel):.3g} of the weights' RMS" if rel else "")
                       + f"; loss with sampled minus mean weights {np.mean(change):+.3g} (range "
                       f"{min(change):+.3g} to {max(change):+.3g}"
                       + (f"; median {100 * np.median(np.abs(rel_loss)):.2f}% of the loss" if rel_loss else "")
                       + f").{flag}")
    return out


# -- figures ------------------------------------------------------------------------------------

def figures(section, items: list[Loaded]):
    from bench.report import plotting as F

    g0 = runs_by(items)
    if not g0:
        return []
    g, cal = calibrate(g0, section)  # stages as the null-calibrated rule detects them, never the declared margin
    name = section_key_str(section)
    slug = F.slug(section)
    ns = sorted({n for by in g.values() for n in by})

    def draw_curves():
        fig, axes = F.grid(len(ns), 10)
        for ax, n in zip(axes, ns):
            for method in _order(g):
                runs = list(g[method].get(n, {}).values())
                curves = [curve(r) for r in runs if len(curve(r))]
                if not curves:
                    continue
                colour = method_colour(method)
                length = min(len(c) for c in curves)
                steps = curves[0][:length, 0]
                ax.plot(steps, np.mean([c[:length, 1] for c in curves], 0), color=colour, lw=1.5,
                        label=f"{method} (n={len(curves)})")
                for r in runs:  # each run's detected stage, lightly: overlaps show where it falls
                    e = stage(r) or {}
                    if e.get("reached"):
                        ax.axvspan(e["onset"], e["recovery"] if e.get("recovered") else steps[-1],
                                   color=colour, alpha=0.05, lw=0)
            ax.set_title(f"N = {n}")
            ax.set_xlabel("training step")
            ax.set_ylabel("DINO (mean over subjects, seeds)")
        F.legend(fig, axes)
        rule = "null-calibrated dip rule" if cal else "declared dip rule, no calibration committed"
        fig.suptitle(f"Subject fidelity over fine-tuning; shaded: corruption stages by the {rule} — {name}")
        return fig

    def draw_finals():
        fig, axes = F.grid(len(MEASURES), 10)
        for ax, m in zip(axes, MEASURES):
            for i, method in enumerate(_order(g)):
                xs, ys, es = [], [], []
                for n in sorted(g[method]):
                    vals = [r["metrics"][m] for r in g[method][n].values() if m in r["metrics"]]
                    if vals:
                        iv = t_interval(vals)
                        xs.append(n * (1 + 0.03 * i))
                        ys.append(iv.mean)
                        es.append(iv.half_width if iv.n >= 2 else 0.0)
                ax.errorbar(xs, ys, yerr=es, color=method_colour(method), marker="o", ms=3, lw=1, capsize=2,
                            label=f"{method} (n={len(g[method].get(ns[0], {}))})")
            ax.set_xscale("log")
            ax.set_xticks(ns, [str(n) for n in ns])
            ax.set_title(m)
            ax.set_xlabel("N (training images)")
        F.legend(fig, axes)
        fig.suptitle(f"Final fidelity per method and N (mean ± 95% CI) — {name}")
        return fig

    specs = [F.FigureSpec(f"{slug}-fewshot-dino", name, "Few-shot: DINO over fine-tuning, corruption stages shaded",
                          draw_curves),
             F.FigureSpec(f"{slug}-fewshot-final", name, "Few-shot: final fidelity per method and N", draw_finals)]
    for field, slug_part in (("kl_weight", "lambda"), ("sigma_init", "sigma")):
        sweep = runs_by(items, swept=field)
        if sweep:
            specs.append(F.FigureSpec(f"{slug}-fewshot-{slug_part}", name, f"Few-shot: BNN's {field} sweep",
                                      lambda sweep=sweep, field=field: _draw_bnn_sweep(sweep, g, name, field)))
    first = _order(g)[0]
    n0 = min(g[first])
    subject = min(k[0] for k in g[first][n0])
    specs.append(F.FigureSpec(f"{slug}-fewshot-samples", name,
                              f"Few-shot samples across checkpoints ({subject}, N = {n0}, first seed)",
                              lambda: _draw_samples(g, subject, n0, name)))
    return specs


def _draw_bnn_sweep(sweep: dict, g: dict, name: str, field: str):
    """Dip depth and final DINO against a swept BNN field; the leftmost point is the study's own
    run of the same method and N (kl_weight 0; sigma_init 0.01 absolute)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for method, by_n in sorted(sweep.items()):
        for n, runs in sorted(by_n.items()):
            base = g.get(method, {}).get(n, {})
            points: dict[float, list[dict]] = {}
            for (subject, seed, value), raw in runs.items():
                points.setdefault(value, []).append(raw)
            xs = sorted(points)
            labels = [f"{x:g}" for x in xs]
            if base:
                xs, labels = ["study", *xs], ["study", *labels]
                points["study"] = list(base.values())
            for ax, value, label in ((axes[0], drawdown, "DINO drawdown"), (axes[1], _final("dino"), "final DINO")):
                ivs = [t_interval([value(r) for r in points[x]]) for x in xs]
                ax.errorbar(range(len(xs)), [iv.mean for iv in ivs],
                            yerr=[iv.half_width if iv.n >= 2 else 0 for iv in ivs], marker="o", ms=3, capsize=2,
                            color=method_colour(method), label=f"{method}, N={n}")
                ax.set_xticks(range(len(xs)), labels)
                ax.set_xlabel(BNN_SWEEPS[field], fontsize=7)
                ax.set_ylabel(label)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"BNN's {field}: dip and final fidelity (mean ± 95% CI) — {name}", fontsize=9)
    return fig


def _draw_samples(g: dict, subject: str, n: int, name: str):
    from bench.report.plotting import strip_columns

    cols = []
    for method in _order(g):
        keys = sorted(k for k in g[method].get(n, {}) if k[0] == subject)
        if not keys:
            continue
        raw = g[method][n][keys[0]]
        e = stage(raw) or {}
        strips = ((raw.get("tracking") or {}).get("artifacts") or {}).get("strip", [])
        lo = e.get("onset") if e.get("reached") else None
        hi = (e.get("recovery") or float("inf")) if lo is not None else None
        framed = {s for s, _ in strips if lo is not None and lo <= s < hi}
        cols.append((f"{method} (seed {keys[0][1]})", strips, framed))
    return strip_columns(cols, f"{subject}, N = {n}: tracked samples per checkpoint (rows: training step; red "
                               f"frame: inside the detected corruption stage) — {name}")


# -- its LEADERBOARD section --------------------------------------------------------------------

def section(rs, tables: list[SimpleTable], links: dict, reported) -> str:
    return study_markdown(
        "Few-shot corruption stage (fewshot-corruption)",
        "Does few-shot fine-tuning go through a corruption stage (subject fidelity rises, dips, recovers), and do "
        "Bayesian layers shrink it? The report re-applies a null-calibrated dip rule to the stored DINO curves (no "
        "run is retrained, no task file changes): its margin is the quantile that a noise-only curve of the run's "
        "length exceeds at most 5% of the time, at the DINO noise measured by `bench calibrate` "
        "(calibration/<task>@v<N>/<profile>.json), with onset and recovery each held for two evaluations. The "
        "primary answer needs no threshold: the drawdown (largest drop below the running maximum) of each "
        "subject's seed-averaged curve against what averaged noise gives, subjects as the unit of replication. "
        "Answers from the results below:",
        [*stage_answer(rs), *verdict_lines(rs), *bnn_check_lines(rs)], [], tables, links, "-fewshot-")


# Its tables and figures (curves with the stage marked, sample strips) replace the generic ones.
REPORT = StudyReport(family=FAMILY, order=30, tables=tables, section=section,
                     figures=lambda section, items, rs: figures(section, items), own_tables=True, generic_figures=())
