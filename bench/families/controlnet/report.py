"""The ControlNet convergence study's table, verdict and figures (Diff-Tuning Table 2 and its
case-study figures; family controlnet), from its run files.

Each run is one (method, condition, seed) with its tracked condition-MSE curve and the detected
sudden-convergence step (`tracking.events`, rule `first_below` on `mse`). The table gives the
steps per condition and their average over conditions as mean ± 95% Student-t half-width over
seeds; a run whose curve never held below the threshold is "not reached" and counted, never
replaced by a number. The speed-up of a method over `controlnet` is paired by seed: per seed,
1 - (its average steps) / (controlnet's average steps), over the conditions both reached.
"""

from __future__ import annotations

import numpy as np

from bench.report.colours import method_colour
from bench.report.extras import SimpleTable
from bench.report.load import Loaded, ResultSet, section_key_str
from bench.report.study import StudyReport, study_markdown
from bench.curve_stats import auc_mean, shape, time_to_half
from bench.stats import small_n_text, t_interval
from bench.verdicts import adjusted_confidence, classify

FAMILY = "controlnet"
BASE = "controlnet"
CONDITIONS = ("edge", "sketch", "depth", "normal", "segmentation")


def _event(raw: dict) -> dict | None:
    for e in (raw.get("tracking") or {}).get("events", []):
        if e.get("rule") == "first_below" and e.get("metric") == "mse":
            return e
    return None


def runs_by(items: list[Loaded]) -> dict[str, dict[str, dict[int, dict]]]:
    """method -> condition -> seed -> raw result, for the study's main runs (no sweep, no override)."""
    out: dict[str, dict[str, dict[int, dict]]] = {}
    for r in items:
        d = r.data
        if d.family != FAMILY or d.sweep or d.task_overrides or d.budget_override:
            continue
        out.setdefault(d.method, {}).setdefault(d.dataset, {})[d.seed] = d.model_dump(mode="json")
    return out


def calibrate(g: dict, section) -> tuple[dict, dict | None]:
    """The runs with each `first_below` event on `mse` re-detected by the null-calibrated rule of
    the committed calibration (bench/calibration.py), when there is one: threshold = the lower of
    the declared one and the run's own first value minus the calibrated offset (a drop that noise
    alone reaches in at most 5% of curves of its length), held for at least 2 evaluations. The
    declared event stays under `declared` (the threshold-sensitivity table and the at-start note
    read it). Returns (runs, calibration or None)."""
    from bench.calibration import below_rule, load_calibration
    from bench.tracking_rules import FirstBelow

    cal = load_calibration(*section)
    if cal is None:
        return g, None
    out: dict = {}
    for method, by in g.items():
        for cond, seeds in by.items():
            for s, raw in seeds.items():
                e = _event(raw)
                curve = (raw.get("tracking") or {}).get("curves", {}).get("mse") or []
                rule = below_rule(cal, cond, "mse", len(curve)) if (e is not None and curve) else None
                if rule is None:
                    out.setdefault(method, {}).setdefault(cond, {})[s] = raw
                    continue
                threshold = min(float(e["threshold"]), float(curve[0][1]) - rule["offset"])
                ev = FirstBelow(metric="mse", threshold=threshold, hold=max(rule["hold"], int(e.get("hold") or 1))) \
                    .detect([tuple(p) for p in curve])
                ev.update(calibrated=True, offset=rule["offset"], noise_sd=rule["sd"], declared=e,
                          sensitivity=e.get("sensitivity", []))
                events = [ev, *(x for x in raw["tracking"]["events"] if x is not e)]
                out.setdefault(method, {}).setdefault(cond, {})[s] = {**raw, "tracking": {**raw["tracking"],
                                                                                         "events": events}}
    return out, cal


def declared_at_start(seeds: dict[int, dict]) -> int:
    """How many runs cross the DECLARED threshold at their first evaluation."""
    return sum(1 for raw in seeds.values() if at_start(raw, (_event(raw) or {}).get("declared", _event(raw))))


def _conditions(g: dict) -> list[str]:
    present = {c for by in g.values() for c in by}
    return [c for c in CONDITIONS if c in present] + sorted(present - set(CONDITIONS))


def _first_step(raw: dict) -> int | None:
    c = (raw.get("tracking") or {}).get("curves", {}).get("mse") or []
    return int(c[0][0]) if c else None


def at_start(raw: dict, event: dict | None = None) -> bool:
    """Whether the run's crossing is at its first evaluation: the pre-trained model (with a
    zero-initialised ControlNet) already passes the threshold, so no training step made it."""
    e = _event(raw) if event is None else event
    return bool(e and e.get("reached") and e.get("step") is not None and e["step"] == _first_step(raw))


def steps_of(seeds: dict[int, dict]) -> tuple[dict[int, int], int, int]:
    """seed -> detected step for the runs that reached it after the start; how many never reached
    it; how many crossed "at start" (first evaluation: never a step, never averaged)."""
    reached, missing, start = {}, 0, 0
    for s, raw in seeds.items():
        e = _event(raw)
        if e is not None and e.get("reached"):
            if at_start(raw, e):
                start += 1
            else:
                reached[s] = int(e["step"])
        else:
            missing += 1
    return reached, missing, start


def _cell(vals: list[float], missing: int = 0, digits: int = 0, start: int = 0) -> str:
    extra = (f", {missing} not reached" if missing else "") + (f", {start} at start" if start else "")
    if not vals:
        return ("none after start" + f" ({extra[2:]})") if (missing or start) else "–"
    iv = t_interval(vals)
    text = f"{iv.mean:.{digits}f} ± {iv.half_width:.{digits}f}" if iv.n >= 2 else f"{iv.mean:.{digits}f}"
    text += f" (n={iv.n})"
    return text + extra


def average_steps(g_method: dict[str, dict[int, dict]], conditions: list[str]) -> dict[int, float]:
    """seed -> mean detected step over `conditions`, for seeds that reached all of them."""
    out = {}
    seeds = set.intersection(*(set(g_method.get(c, {})) for c in conditions)) if conditions else set()
    for s in sorted(seeds):
        steps = [steps_of({s: g_method[c][s]})[0].get(s) for c in conditions]
        if all(v is not None for v in steps):
            out[s] = float(np.mean(steps))
    return out


def speedup(g: dict, method: str, only: list[str] | None = None) -> tuple[list[float], list[str]]:
    """Per shared seed, 1 - avg steps(method) / avg steps(controlnet), over the conditions (of
    `only`, default all) both methods reached after the start in every shared seed; and those
    conditions."""
    base, other = g.get(BASE, {}), g.get(method, {})
    conds = []
    for c in (_conditions(g) if only is None else only):
        shared = set(base.get(c, {})) & set(other.get(c, {}))
        if shared and all(steps_of({s: base[c][s]})[0] and steps_of({s: other[c][s]})[0] for s in shared):
            conds.append(c)
    a, b = average_steps(base, conds), average_steps(other, conds)
    return [1.0 - b[s] / a[s] for s in sorted(set(a) & set(b)) if a[s] > 0], conds


def tables(rs: ResultSet) -> list[SimpleTable]:
    out = []
    items = rs.runs + rs.variants
    for section in sorted({r.section for r in items if r.data.family == FAMILY}):
        g0 = runs_by([r for r in items if r.section == section])
        if not g0:
            continue
        g, cal = calibrate(g0, section)
        conds = _conditions(g)
        # The speed-up times sudden convergence, so only where the transition is step-like (the
        # paper's regime); time-to-threshold conditions are in their columns, not in it.
        sudden = sudden_conditions(g)
        header = ["Method", "Seeds", "Rule", *conds, "Average", "Speed-up vs controlnet (step-like conditions)"]
        rows, csv_rows = [], []
        for method in sorted(g, key=lambda m: (m != BASE, m)):
            cells, csv = [], []
            for c in conds:
                reached, missing, start = steps_of(g[method].get(c, {}))
                cells.append(_cell(list(reached.values()), missing, start=start))
                csv.append(";".join(f"{s}:{v}" for s, v in sorted(reached.items())) + (f";not_reached:{missing}" if missing else "")
                           + (f";at_start:{start}" if start else ""))
            avg = average_steps(g[method], conds)
            sp, sp_conds = speedup(g, method, sudden) if method != BASE else ([], [])
            sp_text = "–" if method == BASE else "no step-like condition" if not sudden else (
                f"{_cell([100 * v for v in sp], digits=1).replace(' (n=', '% (n=', 1)} over "
                f"{', '.join(sp_conds)}" if sp else "not comparable")
            seeds = sorted({s for by in g[method].values() for s in by})
            rule = _rule_text(g[method])
            rows.append([method, str(len(seeds)), rule, *cells, _cell(list(avg.values())), sp_text])
            iv = t_interval(sp) if sp else None
            csv_rows.append([method, len(seeds), rule, *csv, *( [t_interval(list(avg.values())).mean] if avg else [""]),
                             "" if iv is None else iv.mean, "" if iv is None or iv.n < 2 else iv.half_width])
        slug = f"{section[0]}-v{section[1]}-{section[2]}-convergence"
        title = ("Steps to threshold, null-calibrated rule (Table 2 analog; \"sudden\" only where the shape table "
                 "says so)" if cal else "Steps to threshold, declared rule (Table 2 analog; no calibration committed)")
        out.append(SimpleTable(section=section_key_str(section), slug=slug,
                               title=title, header=header, rows=rows,
                               csv_header=["method", "seeds", "rule", *conds, "average_steps", "speedup_mean",
                                           "speedup_ci95_half_width"], csv_rows=csv_rows))
        out.append(_sensitivity_table(section, g0, conds))
        out.append(_shape_table(section, g, conds))
    return out


def _mse(raw: dict) -> list:
    return (raw.get("tracking") or {}).get("curves", {}).get("mse") or []


def sudden_share(by_cond_seeds: dict[int, dict]) -> tuple[int, int]:
    """(runs whose MSE curve is step-like: a logistic beats an exponential decay by AIC, runs)."""
    shapes = [shape(_mse(raw))["sudden"] for raw in by_cond_seeds.values() if _mse(raw)]
    return sum(shapes), len(shapes)


def timed_conditions(g, method: str, sudden: list[str]) -> list[str]:
    """The step-like conditions on which every paired run of both methods reached a step (the ones
    a steps-to-sudden-convergence speed-up is averaged over)."""
    return [c for c in sudden if all(steps_of({s: g[m][c][s]})[0] for m in (BASE, method)
                                     for s in set(g[BASE].get(c, {})) & set(g[method].get(c, {})))]


def sudden_conditions(g: dict) -> list[str]:
    """Conditions whose transition is step-like in a majority of every method's runs: the only ones
    where a threshold crossing is called a sudden convergence."""
    out = []
    for c in _conditions(g):
        shares = [sudden_share(by.get(c, {})) for by in g.values()]
        if shares and all(n and 2 * k > n for k, n in shares):
            out.append(c)
    return out


def _shape_table(section, g, conds) -> SimpleTable:
    """Threshold-free statistics per method and condition, and the transition's shape."""
    header = ["Method", "Condition", "Runs", "Mean MSE over training (AUC)", "Time to half change (steps)",
              "Step-like (logistic beats exponential, ΔAIC ≥ 2)", "Event called"]
    rows, csv_rows = [], []
    sudden = set(sudden_conditions(g))
    for method in sorted(g, key=lambda m: (m != BASE, m)):
        for c in conds:
            seeds = g[method].get(c, {})
            curves = [_mse(raw) for raw in seeds.values() if _mse(raw)]
            if not curves:
                continue
            auc = [auc_mean(cv) for cv in curves]
            half = [time_to_half(cv) for cv in curves]
            k, n = sudden_share(seeds)
            called = "sudden convergence" if c in sudden else "time to threshold"
            rows.append([method, c, str(len(curves)), _cell(auc, digits=4), _cell([h for h in half if h is not None],
                         sum(h is None for h in half)), f"{k}/{n}", called])
            csv_rows.append([method, c, len(curves), float(np.mean(auc)),
                             ";".join("" if h is None else f"{h:g}" for h in half), k, n, called])
    slug = f"{section[0]}-v{section[1]}-{section[2]}-curve-shape"
    return SimpleTable(section=section_key_str(section), slug=slug,
                       title="Threshold-free statistics and the transition's shape", header=header, rows=rows,
                       csv_header=["method", "condition", "runs", "auc_mean_mse", "time_to_half_steps", "step_like",
                                   "runs_fitted", "event_called"], csv_rows=csv_rows)


def _rule_text(by_cond: dict[str, dict[int, dict]]) -> str:
    events = [_event(raw) or {} for seeds in by_cond.values() for raw in seeds.values()]
    holds = {e.get("hold") for e in events}
    holds.discard(None)
    if not holds:
        return "–"
    if any(e.get("calibrated") for e in events):
        return (f"MSE < min(declared, first value − calibrated offset) for {'/'.join(str(h) for h in sorted(holds))} "
                f"evaluations")
    return f"MSE < threshold for {'/'.join(str(h) for h in sorted(holds))} evaluations"


def _sensitivity_table(section, g, conds) -> SimpleTable:
    """How the detected step moves when the threshold moves by -20% / +20% (mean over the seeds
    that reached it; "n.r." counts those that did not)."""
    header = ["Method", "Condition", "Threshold", "Steps at -20%", "Steps as declared", "Steps at +20%"]
    rows, csv_rows = [], []
    for method in sorted(g, key=lambda m: (m != BASE, m)):
        for c in conds:
            seeds = g[method].get(c, {})
            by_rel: dict[float, list] = {}
            threshold = None
            for raw in seeds.values():
                e = _event(raw) or {}
                e = e.get("declared", e)
                threshold = e.get("threshold", threshold)
                first = _first_step(raw)
                for row in e.get("sensitivity", []):
                    step = row["step"]
                    by_rel.setdefault(row["relative_change"], []).append("start" if step is not None and step == first
                                                                         else step)
            if not by_rel:
                continue
            cells = []
            for rel in (-0.2, 0.0, 0.2):
                vals = by_rel.get(rel, [])
                got = [v for v in vals if v is not None and v != "start"]
                start = sum(1 for v in vals if v == "start")
                cells.append(_cell(got, len(vals) - len(got) - start, start=start))
            rows.append([method, c, f"{threshold:g}" if threshold is not None else "–", *cells])
            csv_rows.append([method, c, threshold, *(";".join(str(v) for v in by_rel.get(rel, [])) for rel in (-0.2, 0.0, 0.2))])
    slug = f"{section[0]}-v{section[1]}-{section[2]}-threshold-sensitivity"
    return SimpleTable(section=section_key_str(section), slug=slug, title="Step at the declared threshold ±20% (the declared rule, before calibration)",
                       header=header, rows=rows, csv_header=["method", "condition", "threshold", "minus20", "declared",
                                                            "plus20"], csv_rows=csv_rows)


def paper_speedup(reported, task: str, method: str):
    """The paper's reported convergence speed-up of `method` (reference/reported.yaml), or None."""
    for r in reported or []:
        if r.task == task and r.metric == "convergence_speedup" and r.method == method and r.dataset == "mean":
            return r
    return None


def _speedup_by(g: dict, method: str, conds: list[str], value) -> list[float]:
    """Per seed shared by both methods in every condition of `conds` with value(raw) defined for
    both: 1 - mean over conds of value(method) / mean over conds of value(controlnet)."""
    base, other = g.get(BASE, {}), g.get(method, {})
    if not conds:
        return []
    seeds = set.intersection(*(set(base.get(c, {})) & set(other.get(c, {})) for c in conds))
    out = []
    for s in sorted(seeds):
        a = [value(base[c][s]) for c in conds]
        b = [value(other[c][s]) for c in conds]
        if all(v is not None for v in a + b) and np.mean(a) > 0:
            out.append(1.0 - float(np.mean(b)) / float(np.mean(a)))
    return out


def _half(raw: dict) -> float | None:
    return time_to_half(_mse(raw))


def _auc(raw: dict) -> float | None:
    return auc_mean(_mse(raw)) if _mse(raw) else None


def verdict_lines(rs: ResultSet, reported: list | None = None) -> list[str]:
    """Per method against controlnet, two verdicts (bench/verdicts.py: one of five kinds), Bonferroni
    over the section's claims: the speed-up in steps to the null-calibrated threshold over the
    conditions whose transition is step-like (the paper's regime; "out of regime" where none is),
    and the threshold-free speed-up in time to half of each run's own change over every condition.
    Runs that cross the declared threshold at their first evaluation are "at start", never averaged."""
    from bench.preconditions import check, out_of_regime

    lines = []
    items = rs.runs + rs.variants
    for section in sorted({r.section for r in items if r.data.family == FAMILY}):
        g0 = runs_by([r for r in items if r.section == section])
        g, cal = calibrate(g0, section)
        name = section_key_str(section)
        declared = check(*section, [r for r in items if r.section == section])
        lines += [f"- {name}: Precondition {o.line()[2:]}" for o in declared]
        others = sorted(m for m in g if m != BASE)
        conf = adjusted_confidence(2 * len(others))
        sudden = sudden_conditions(g)
        every = _conditions(g)
        for method in others:
            rep = paper_speedup(reported, section[0], method)
            paper = dict(paper_effect=rep.value, paper_text=f"the paper's {rep.value:+.0%}{rep.mark} ({rep.entry})") \
                if rep else dict(paper_effect=None)
            rule = "null-calibrated" if cal else "declared (no calibration committed)"
            # 1. the event, where the paper's regime holds
            reached = timed_conditions(g, method, sudden)
            sp = _speedup_by(g, method, reached, lambda raw: (steps_of({0: raw})[0] or {}).get(0))
            unmet = out_of_regime(declared, method)
            regime = unmet if unmet else None if sudden else (
                "no condition's MSE curve is step-like in a majority of runs (a logistic never beats an exponential "
                "decay by ΔAIC ≥ 2), so there is no sudden convergence to time")
            if regime or len(sp) < 2:
                v = classify(float("nan"), float("nan"), out_of_regime=regime, **paper)
                extra = "" if regime else (f" (fewer than two shared seeds reached the {rule} threshold after the "
                                           f"start on the step-like conditions: {', '.join(sudden)})")
                lines.append(f"- **{name}**: {method} against controlnet, speed-up in steps to sudden convergence "
                             f"({rule} threshold): {v}{extra}.")
            else:
                iv = t_interval(sp, conf)
                v = classify(iv.low, iv.high, sd=iv.std, n=iv.n, fmt="+.0%", alpha=1 - conf, out_of_regime=unmet,
                             **paper)
                lines.append(f"- **{name}**: {method} against controlnet, speed-up in steps to sudden convergence "
                             f"({rule} threshold; step-like conditions only: {', '.join(reached)}): {v}. Speed-up "
                             f"{100 * iv.mean:+.1f}% ± {100 * iv.half_width:.1f}% ({100 * conf:.1f}% t interval, "
                             f"Bonferroni over {2 * len(others)} claims, n={iv.n} seeds{small_n_text(sp, conf, 1, 100, '%')}).")
            # 2. threshold-free: time to half of the run's own change, every condition
            sp2 = _speedup_by(g, method, every, _half)
            if len(sp2) < 2:
                v = classify(float("nan"), float("nan"), out_of_regime=unmet, **paper)
                lines.append(f"- **{name}**: {method} against controlnet, speed-up in time to half change "
                             f"(threshold-free): {v}.")
            else:
                iv = t_interval(sp2, conf)
                v = classify(iv.low, iv.high, sd=iv.std, n=iv.n, fmt="+.0%", alpha=1 - conf, out_of_regime=unmet,
                             **paper)
                primary = " Primary where the event is not established." if (regime or len(sp) < 2) else ""
                lines.append(f"- **{name}**: {method} against controlnet, speed-up in time to half of each run's own "
                             f"MSE change (threshold-free, isotonic fit; all {len(every)} conditions): {v}. Speed-up "
                             f"{100 * iv.mean:+.1f}% ± {100 * iv.half_width:.1f}% ({100 * conf:.1f}% t interval, "
                             f"Bonferroni over {2 * len(others)} claims, n={iv.n} seeds{small_n_text(sp2, conf, 1, 100, '%')})."
                             f"{primary}")
            # 3. threshold-free, a note outside the Bonferroni family: the paper reports no effect for it
            rel = _speedup_by(g, method, every, _auc)
            if len(rel) >= 2:
                iv = t_interval(rel)
                sign = "excludes 0" if iv.low > 0 or iv.high < 0 else "contains 0"
                lines.append(f"- {name}: {method} against controlnet, mean tracked MSE over training (threshold-free, "
                             f"a note: the paper reports no number for it): 1 - ratio {100 * iv.mean:+.1f}% ± "
                             f"{100 * iv.half_width:.1f}% (95% t interval over n={iv.n} seeds, all {len(every)} "
                             f"conditions; {sign}; > 0: {method} follows its condition more closely over training).")
        for method, by in sorted(g.items()):
            never = [c for c in every if steps_of(by.get(c, {}))[1]]
            start = {c: declared_at_start(g[method].get(c, {})) for c in every}
            if never:
                lines.append(f"- {name}: {method} did not reach the {'calibrated ' if cal else ''}threshold in some "
                             f"seeds on: {', '.join(never)} (counted as not reached, never imputed).")
            if any(start.values()):
                lines.append(f"- {name}: {method} crossed the declared threshold at its first evaluation (the "
                             f"pre-trained model already passes: \"at start\", never averaged as a step) in "
                             + ", ".join(f"{c}: {k} seed(s)" for c, k in start.items() if k) + ".")
        if sudden != every:
            lines.append(f"- {name}: transitions called sudden (logistic beats exponential in most runs of every "
                         f"method): {', '.join(sudden) or 'none'}; the others are reported as time to threshold.")
    return lines


# -- figures ------------------------------------------------------------------------------------

def figures(section, items: list[Loaded]):
    from bench.report import plotting as F

    g0 = runs_by(items)
    if not g0:
        return []
    g, cal = calibrate(g0, section)
    sudden = set(sudden_conditions(g))
    conds = _conditions(g)
    name = section_key_str(section)
    slug = F.slug(section)

    def draw_curves():
        fig, axes = F.grid(len(conds), 10)
        for ax, c in zip(axes, conds):
            threshold = None
            for method in sorted(g, key=lambda m: (m != BASE, m)):
                seeds = g[method].get(c, {})
                colour = method_colour(method)
                for i, (s, raw) in enumerate(sorted(seeds.items())):
                    curve = np.array((raw.get("tracking") or {}).get("curves", {}).get("mse", []), dtype=float)
                    if not len(curve):
                        continue
                    ax.plot(curve[:, 0], curve[:, 1], color=colour, lw=1, alpha=0.8,
                            label=f"{method} (n={len(seeds)})" if i == 0 else None)
                    e = _event(raw) or {}
                    threshold = (e.get("declared") or e).get("threshold", threshold)
                    # A crossing is marked only where it is established: the null-calibrated rule
                    # reached it after the start, on a condition whose transition is step-like.
                    if e.get("reached") and not at_start(raw, e) and (c in sudden):
                        ax.plot([e["step"]], [e["value"]], marker="o", ms=5, color=colour, mec="black", mew=0.6)
            if threshold is not None:
                ax.axhline(threshold, color="grey", ls="--", lw=0.8)
            ax.set_title(c if c in sudden else f"{c} (no step-like transition)")
            ax.set_xlabel("training step")
            ax.set_ylabel("condition MSE")
        F.legend(fig, axes)
        rule = "null-calibrated rule" if cal else "declared rule, no calibration committed"
        fig.suptitle(f"Condition MSE over training; dashed: declared threshold; dots: sudden convergence ({rule}, "
                     f"step-like conditions only) — {name}")
        return fig

    specs = [F.FigureSpec(f"{slug}-controlnet-mse", name, "ControlNet: condition MSE over training (case study)",
                          draw_curves)]
    for c in conds:
        specs.append(F.FigureSpec(f"{slug}-controlnet-samples-{c}", name,
                                  f"ControlNet samples across checkpoints, {c} (first seed)",
                                  lambda c=c: _draw_strips(g, c, name)))
    return specs


def _draw_strips(g: dict, condition: str, name: str):
    """One column per method (its first seed): a row of generated images per tracked checkpoint,
    the row at the detected sudden-convergence step framed in red."""
    from bench.report.plotting import strip_columns

    methods = [m for m in sorted(g, key=lambda m: (m != BASE, m)) if g[m].get(condition)]
    cols = []
    for m in methods:
        seed = min(g[m][condition])
        raw = g[m][condition][seed]
        strips = ((raw.get("tracking") or {}).get("artifacts") or {}).get("strip", [])
        cols.append((f"{m} (seed {seed})", strips, {(_event(raw) or {}).get("step")}))
    return strip_columns(cols, f"{condition}: held-out samples per checkpoint (rows: training step;\nred frame: "
                               f"detected sudden convergence) — {name}")


# -- its LEADERBOARD section --------------------------------------------------------------------

def section(rs: ResultSet, tables: list[SimpleTable], links: dict, reported) -> str:
    paper = [r for r in reported if r.task in {t.section.split("@")[0] for t in tables}]
    quoted = ["", "Reported by the paper, at full scale (SD v1.5, COCO/ADE20k) and not comparable with these "
              "numbers: " + "; ".join(f"{r.method} {r.metric} {r.value:+.0%}{r.mark} ({r.source})" for r in paper)
              + "."] if paper else []
    return study_markdown(
        "ControlNet sudden convergence (controlnet-convergence)",
        "Does Diff-Tuning make a ControlNet start following its condition in fewer steps? The step is the first "
        "tracked evaluation whose condition MSE stays below a threshold for two evaluations. The threshold is "
        "re-applied by the report to the stored curves (no run is retrained, no task file changes): the lower of "
        "the condition's declared threshold and the run's own first value minus a null-calibrated offset, set so "
        "that a noise-only curve of the run's length at the noise measured by `bench calibrate` "
        "(calibration/<task>@v<N>/<profile>.json) fires at most 5% of the time. A crossing of the declared "
        "threshold at the first evaluation is \"at start\" and never averaged. A crossing is called a sudden "
        "convergence only on conditions whose curves are step-like (a logistic beats an exponential decay by "
        "AIC); elsewhere it is a time to threshold. Threshold-free statistics (mean MSE over training, time to "
        "half of the run's own change) stand beside it. Answers from the results below:",
        verdict_lines(rs, reported), quoted, tables, links, "-controlnet-")


# Steps to an event are not a metric against full fine-tuning: its tables replace the generic ones,
# and its figures (curves with thresholds, sample strips) the generic figures.
REPORT = StudyReport(family=FAMILY, order=20, tables=tables, section=section,
                     figures=lambda section, items, rs: figures(section, items), own_tables=True, generic_figures=())
