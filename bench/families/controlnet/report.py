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
from bench.stats import t_interval
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


def speedup(g: dict, method: str) -> tuple[list[float], list[str]]:
    """Per shared seed, 1 - avg steps(method) / avg steps(controlnet), over the conditions both
    methods reached in every shared seed; and those conditions."""
    base, other = g.get(BASE, {}), g.get(method, {})
    conds = []
    for c in _conditions(g):
        shared = set(base.get(c, {})) & set(other.get(c, {}))
        if shared and all(steps_of({s: base[c][s]})[0] and steps_of({s: other[c][s]})[0] for s in shared):
            conds.append(c)
    a, b = average_steps(base, conds), average_steps(other, conds)
    return [1.0 - b[s] / a[s] for s in sorted(set(a) & set(b)) if a[s] > 0], conds


def tables(rs: ResultSet) -> list[SimpleTable]:
    out = []
    items = rs.runs + rs.variants
    for section in sorted({r.section for r in items if r.data.family == FAMILY}):
        g = runs_by([r for r in items if r.section == section])
        if not g:
            continue
        conds = _conditions(g)
        header = ["Method", "Seeds", "Rule", *conds, "Average", "Speed-up vs controlnet"]
        rows, csv_rows = [], []
        for method in sorted(g, key=lambda m: (m != BASE, m)):
            cells, csv = [], []
            for c in conds:
                reached, missing, start = steps_of(g[method].get(c, {}))
                cells.append(_cell(list(reached.values()), missing, start=start))
                csv.append(";".join(f"{s}:{v}" for s, v in sorted(reached.items())) + (f";not_reached:{missing}" if missing else "")
                           + (f";at_start:{start}" if start else ""))
            avg = average_steps(g[method], conds)
            sp, sp_conds = speedup(g, method) if method != BASE else ([], [])
            sp_text = "–" if method == BASE else (
                f"{_cell([100 * v for v in sp], digits=1).replace(' (n=', '% (n=', 1)}"
                + (f" over {len(sp_conds)} of {len(conds)} conditions" if len(sp_conds) < len(conds) else "")
                if sp else "not comparable")
            seeds = sorted({s for by in g[method].values() for s in by})
            rule = _rule_text(g[method])
            rows.append([method, str(len(seeds)), rule, *cells, _cell(list(avg.values())), sp_text])
            iv = t_interval(sp) if sp else None
            csv_rows.append([method, len(seeds), rule, *csv, *( [t_interval(list(avg.values())).mean] if avg else [""]),
                             "" if iv is None else iv.mean, "" if iv is None or iv.n < 2 else iv.half_width])
        slug = f"{section[0]}-v{section[1]}-{section[2]}-convergence"
        out.append(SimpleTable(section=section_key_str(section), slug=slug,
                               title="Steps to sudden convergence (Table 2 analog)", header=header, rows=rows,
                               csv_header=["method", "seeds", "rule", *conds, "average_steps", "speedup_mean",
                                           "speedup_ci95_half_width"], csv_rows=csv_rows))
        out.append(_sensitivity_table(section, g, conds))
    return out


def _rule_text(by_cond: dict[str, dict[int, dict]]) -> str:
    holds = {(_event(raw) or {}).get("hold") for seeds in by_cond.values() for raw in seeds.values()}
    holds.discard(None)
    return f"MSE < threshold for {'/'.join(str(h) for h in sorted(holds))} evaluations" if holds else "–"


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
    return SimpleTable(section=section_key_str(section), slug=slug, title="Sudden-convergence step at threshold ±20%",
                       header=header, rows=rows, csv_header=["method", "condition", "threshold", "minus20", "declared",
                                                            "plus20"], csv_rows=csv_rows)


def paper_speedup(reported, task: str, method: str):
    """The paper's reported convergence speed-up of `method` (reference/reported.yaml), or None."""
    for r in reported or []:
        if r.task == task and r.metric == "convergence_speedup" and r.method == method and r.dataset == "mean":
            return r
    return None


def verdict_lines(rs: ResultSet, reported: list | None = None) -> list[str]:
    """One verdict per method against controlnet (bench/verdicts.py: one of five kinds), on the
    per-seed speed-up over the conditions both methods reached after the start in every shared
    seed; runs that cross at their first evaluation are counted "at start", never averaged."""
    lines = []
    items = rs.runs + rs.variants
    for section in sorted({r.section for r in items if r.data.family == FAMILY}):
        g = runs_by([r for r in items if r.section == section])
        name = section_key_str(section)
        others = sorted(m for m in g if m != BASE)
        conf = adjusted_confidence(len(others))
        for method in others:
            rep = paper_speedup(reported, section[0], method)
            paper = dict(paper_effect=rep.value, paper_text=f"the paper's {rep.value:+.0%}{rep.mark} ({rep.entry})") \
                if rep else dict(paper_effect=None)
            sp, conds = speedup(g, method)
            if len(sp) < 2:
                v = classify(float("nan"), float("nan"), **paper)
                lines.append(f"- **{name}**: {method} against controlnet, speed-up in steps to threshold: {v} "
                             f"(fewer than two shared seeds reached the threshold after the start on a common "
                             f"condition).")
                continue
            iv = t_interval(sp, conf)
            v = classify(iv.low, iv.high, sd=iv.std, n=iv.n, fmt="+.0%", alpha=1 - conf, **paper)
            lines.append(f"- **{name}**: {method} against controlnet, speed-up in steps to threshold: {v}. Speed-up "
                         f"{100 * iv.mean:+.1f}% ± {100 * iv.half_width:.1f}% ({100 * conf:.1f}% t interval, "
                         f"Bonferroni over {len(others)} claim(s), n={iv.n} seeds; average over {len(conds)} "
                         f"condition(s): {', '.join(conds) or 'none'}).")
        for method, by in sorted(g.items()):
            never = [c for c in _conditions(g) if steps_of(by.get(c, {}))[1]]
            start = {c: steps_of(by.get(c, {}))[2] for c in _conditions(g)}
            if never:
                lines.append(f"- {name}: {method} did not reach the threshold in some seeds on: {', '.join(never)} "
                             f"(counted as not reached, never imputed).")
            if any(start.values()):
                lines.append(f"- {name}: {method} crossed the threshold at its first evaluation (the pre-trained "
                             f"model already passes: \"at start\", never averaged as a step) in "
                             + ", ".join(f"{c}: {k} seed(s)" for c, k in start.items() if k) + ".")
    return lines


# -- figures ------------------------------------------------------------------------------------

def figures(section, items: list[Loaded]):
    from bench.report import plotting as F

    g = runs_by(items)
    if not g:
        return []
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
                    threshold = e.get("threshold", threshold)
                    if e.get("reached"):
                        ax.plot([e["step"]], [e["value"]], marker="o", ms=5, color=colour, mec="black", mew=0.6)
            if threshold is not None:
                ax.axhline(threshold, color="grey", ls="--", lw=0.8)
            ax.set_title(c)
            ax.set_xlabel("training step")
            ax.set_ylabel("condition MSE")
        F.legend(fig, axes)
        fig.suptitle(f"Condition MSE over training; dashed: threshold, dots: sudden convergence — {name}")
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
        "tracked evaluation whose condition MSE stays below the condition's declared threshold for the declared "
        "number of evaluations (bench/tracking_rules.py). Answers from the results below:",
        verdict_lines(rs, reported), quoted, tables, links, "-controlnet-")


# Steps to an event are not a metric against full fine-tuning: its tables replace the generic ones,
# and its figures (curves with thresholds, sample strips) the generic figures.
REPORT = StudyReport(family=FAMILY, order=20, tables=tables, section=section,
                     figures=lambda section, items, rs: figures(section, items), own_tables=True, generic_figures=())
