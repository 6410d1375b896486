"""LEADERBOARD.md and the CSV tables beside it.

Byte-identical on every regeneration from the same results: no timestamps, no absolute paths,
stable ordering, fixed float formatting. Reproduced numbers and the papers' numbers never share a
cell (nor a CSV file). They share a table only in the `paper` profile, the papers' own full-scale
setting; in any other profile (tiny: stand-in data and models) the papers' numbers are not
comparable with ours, so they get a table of their own below ours.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

from bench.report.aggregate import BASELINE, Cell, Row, Table
from bench.report.extras import md_row
from bench.report.head_to_head import markdown as head_to_head_markdown
from bench.report.reported import LEGEND, Implied, ReportedValue, implied_promotion
from bench.stats import small_n_text, t_interval
from bench.verdicts import adjusted_confidence, classify
from bench.verify import RERUN_PROFILES

UP, DOWN = "▲", "▼"
PAPER_PROFILE = "paper"  # the papers' own setting: the only profile whose numbers compare with theirs
FLAG_POINTS = 1.0  # a stated promotion this many percentage points off the one its own numbers imply is flagged


def fmt(x: float, digits: int) -> str:
    return f"{x:.{digits}f}"


def cell_text(cell: Cell | None, digits: int, expected: int, mark: bool = True) -> str:
    """'12.34 ± 0.56 (n=3)'; the ± is the 95% CI half-width over seeds."""
    if cell is None:
        return "—"
    iv = cell.interval
    n = f"n={iv.n}" if not cell.missing_seeds or expected == 0 else f"n={iv.n}/{expected}"
    body = (f"{fmt(iv.mean, digits)} ± {fmt(iv.half_width, digits)}" if iv.n >= 2 and math.isfinite(iv.half_width)
            else f"{fmt(iv.mean, digits)} (no CI)")
    sig = {-1: f" {DOWN}", 1: f" {UP}"}.get(cell.significant, "") if mark else ""
    return f"{body} ({n}){sig}"


def pct_text(cell: Cell | None) -> str:
    if cell is None:
        return "—"
    iv = cell.interval
    ci = f" ± {iv.half_width * 100:.1f}" if iv.n >= 2 and math.isfinite(iv.half_width) else " (no CI)"
    mde = f"; MDE {cell.mde * 100:.1f}" if cell.mde is not None and math.isfinite(cell.mde) else ""
    return f"{iv.mean * 100:+.1f}%{ci} (n={iv.n}{mde})"


def reported_text(rep: ReportedValue | None, digits: int, percent: bool = False) -> str:
    if rep is None:
        return "—"
    v = f"{rep.value * 100:+.0f}%" if percent else f"{rep.value:.{digits}f}"
    return v + rep.mark


def comparable(t: Table) -> bool:
    """Whether the papers' numbers may sit in columns beside ours."""
    return t.profile == PAPER_PROFILE


def promotion_check(t: Table, method: str) -> tuple[ReportedValue, Implied] | None:
    """(stated, implied) when the paper's stated relative promotion of `method` is more than
    FLAG_POINTS off the one implied by the per-dataset numbers in this table; else None."""
    stated = t.reported_promotion.get((method, "mean"))
    implied = implied_promotion(t.reported.values(), method, BASELINE, t.metric.lower_is_better)
    if stated is None or implied is None or abs(stated.value - implied.value) * 100 <= FLAG_POINTS:
        return None
    return stated, implied


def reported_promotion_text(t: Table, method: str) -> str:
    text = reported_text(t.reported_promotion.get((method, "mean")), 0, percent=True)
    check = promotion_check(t, method)
    if check is not None:
        text += f"; implied {check[1].value * 100:+.1f}%{check[1].mark}"
    return text


def row_config(row: Row) -> str:
    if row.reported_only:
        return "not run"
    return f"{row.config_hash}" + (f" steps={row.steps}" if row.budget_override else "")


def table_markdown(t: Table) -> list[str]:
    """The reproduced table; a `paper` column after each of ours only where comparable(t)."""
    d = t.metric.digits
    n_exp = len(t.expected_seeds)
    paper = comparable(t)
    head = ["Method", "Config"]
    for col in [*t.datasets, "Mean", "Rel. promotion"]:
        head += [col, "paper"] if paper else [col]
    lines = [md_row(head), md_row(["---"] * 2 + ["---:"] * (len(head) - 2))]
    for row in t.rows if paper else [r for r in t.rows if not r.reported_only]:
        cells = [f"**{row.method}**" if row.method == BASELINE else row.method, row_config(row)]
        for ds in [*t.datasets, "mean"]:
            c = row.mean if ds == "mean" else row.cells.get(ds)
            cells.append("" if row.reported_only else cell_text(c, d, n_exp))
            if paper:
                cells.append(reported_text(t.reported.get((row.method, ds)), d))
        cells.append(_promotion_summary(row, t))
        if paper:
            cells.append(reported_promotion_text(t, row.method))
        lines.append(md_row(cells))
    return lines


def reported_markdown(t: Table) -> list[str]:
    """The papers' numbers for this table's task and metric, as a table of their own (no reproduced
    number in it), with the source entries of each row."""
    reps = [*t.reported.values(), *t.reported_promotion.values()]
    methods = sorted({r.method for r in reps}, key=lambda m: (m != BASELINE, m))
    if not methods:
        return []
    d = t.metric.digits
    # No all-empty Mean or Rel. promotion column where no paper states one.
    has_mean, promo = any(ds == "mean" for _, ds in t.reported), bool(t.reported_promotion)
    cols = [*t.datasets, *(["mean"] if has_mean else [])]
    head = ["Method", *t.datasets, *(["Mean"] if has_mean else []), *(["Rel. promotion"] if promo else []), "Source"]
    lines = [md_row(head), md_row(["---"] + ["---:"] * (len(head) - 2) + ["---"])]
    for m in methods:
        entries = sorted({r.entry for r in reps if r.method == m})
        lines.append(md_row([f"**{m}**" if m == BASELINE else m,
                              *(reported_text(t.reported.get((m, ds)), d) for ds in cols),
                              *([reported_promotion_text(t, m)] if promo else []),
                              ", ".join(f"`{e}`" for e in entries)]))
    return lines


def _promotion_summary(row: Row, t: Table) -> str:
    if row.reported_only:
        return ""
    if row.method == BASELINE:
        return "baseline"
    promo = row.promotion.get("mean")
    text = pct_text(promo)
    if promo is not None and len(row.promotion_datasets) < len(t.datasets):
        text += f" over {len(row.promotion_datasets)}/{len(t.datasets)} datasets"
    return text


def promotion_markdown(t: Table) -> list[str]:
    rows = [r for r in t.rows if r.promotion]
    if not rows:
        return []
    head = ["Method", "Config", *t.datasets, "Mean"]
    lines = [md_row(head), md_row(["---"] * 2 + ["---:"] * (len(head) - 2))]
    for row in rows:
        lines.append(md_row([row.method, row_config(row), *(pct_text(row.promotion.get(ds)) for ds in t.datasets),
                              pct_text(row.promotion.get("mean"))]))
    return lines


def paper_promotion(t: Table, method: str) -> tuple[float, str] | None:
    """The paper's relative promotion of `method` over full-ft for this table's metric: the stated
    one (reference/reported.yaml, "mean"), else the one its per-dataset numbers imply; with how the
    verdict line names it. None when the papers report neither."""
    stated = t.reported_promotion.get((method, "mean"))
    if stated is not None:
        return stated.value, f"the paper's {stated.value * 100:+.0f}%{stated.mark} (`{stated.entry}`)"
    implied = implied_promotion(t.reported.values(), method, BASELINE, t.metric.lower_is_better)
    if implied is not None:
        return implied.value, (f"the paper's {implied.value * 100:+.1f}%{implied.mark} (implied by its "
                               f"{t.metric.title} on {len(implied.datasets)} datasets, "
                               f"{', '.join(f'`{e}`' for e in implied.entries)})")
    return None


def verdicts(t: Table) -> list[str]:
    """One verdict per method (bench/verdicts.py: supports / contradicts / inconclusive with the
    seeds that would decide it / equivalent / out of regime) on its relative promotion over full-ft
    on the mean over ALL the task's datasets, paired per seed, with a Bonferroni-adjusted t interval
    over the table's methods, against the paper's promotion (stated, or implied by its per-dataset
    numbers). The Holm mark of the Mean cell stays in the table. A declared precondition that
    does not hold (bench/preconditions.py) puts the verdicts it gates out of regime."""
    from bench.preconditions import out_of_regime

    out = []
    compared = [r for r in t.rows if not r.reported_only and r.method != BASELINE]
    conf = adjusted_confidence(len(compared))
    for row in compared:
        paper = paper_promotion(t, row.method)
        kw = dict(paper_effect=paper[0], paper_text=paper[1]) if paper else dict(paper_effect=None)
        kw["out_of_regime"] = out_of_regime(t.regime, row.method)
        promo = row.promotion.get("mean")
        if promo is None or len(promo.values) < 2 or row.mean is None or row.mean.vs_baseline is None:
            have = len(row.cells)
            v = classify(float("nan"), float("nan"), **kw)
            out.append(f"- {row.method}: {v} (not compared on the mean: results on {have}/{len(t.datasets)} "
                       f"datasets, or fewer than two seeds shared with full-ft)")
            continue
        iv = t_interval(list(promo.values.values()), conf)
        v = classify(iv.low, iv.high, sd=iv.std, n=iv.n, fmt="+.1%", alpha=1 - conf, **kw)
        out.append(f"- {row.method}: {v}. Relative promotion over full-ft on the mean over all {len(t.datasets)} "
                   f"datasets {iv.mean * 100:+.1f}% ± {iv.half_width * 100:.1f} points ({100 * conf:.1f}% t interval, "
                   f"Bonferroni over {len(compared)} methods, n={iv.n} paired seeds"
                   f"{small_n_text(list(promo.values.values()), conf, 1, 100, '%')})")
    return out


def _sources(t: Table) -> list[str]:
    seen: dict[str, ReportedValue] = {}
    for rep in [*t.reported.values(), *t.reported_promotion.values()]:
        seen.setdefault(rep.entry, rep)
    out = []
    for entry, rep in sorted(seen.items()):
        methods = sorted({r.method for r in [*t.reported.values(), *t.reported_promotion.values()] if r.entry == entry})
        out.append(f"- `{entry}` ({', '.join(methods)}): {rep.source}")
    notes = sorted({(r.method, r.dataset, r.note) for r in [*t.reported.values(), *t.reported_promotion.values()]
                    if r.note})
    out += [f"- {m} / {ds}: {note}" for m, ds, note in notes]
    for m in sorted({r.method for r in t.reported_promotion.values()}):
        check = promotion_check(t, m)
        if check is not None:
            stated, implied = check
            out.append(f"- {m}: stated {stated.value * 100:+.0f}%{stated.mark} ({stated.source}); the per-dataset "
                       f"{t.metric.title} values above ({', '.join(f'`{e}`' for e in implied.entries)}) imply "
                       f"{implied.value * 100:+.1f}%{implied.mark}, the mean over their {len(implied.datasets)} "
                       f"shared datasets of ({BASELINE} − {m}) / {BASELINE}.")
    return out


def preconditions_markdown(outcomes, task: str) -> list[str]:
    from bench.preconditions import markdown

    return markdown(outcomes, task)


def render_markdown(tables: list[Table], *, excluded: list[str], reported_only: list[ReportedValue],
                    figure_links: dict[str, list[tuple[str, str]]], results_label: str = "results/") -> str:
    out = ["# Leaderboard: transfer learning of diffusion models", "",
           f"Generated by `bench leaderboard` from the result files under `{results_label}`; do not edit by hand.",
           "Each reproduced cell is the mean over seeds ± the half-width of its 95% Student-t confidence interval, "
           "with the number of seeds (n=2/3: a seed is missing). The papers' numbers come from "
           "`reference/reported.yaml` and are never mixed with reproduced ones: under the `paper` profile a `paper` "
           "column follows each of ours; under any other profile they are not comparable with ours and are listed "
           "in a table of their own.", "",
           "Legend:",
           f"- {DOWN} / {UP}: (method − full-ft) is below / above zero by a paired t-test over the seeds both "
           "share, significant after Holm-Bonferroni correction within its family of the table (the Mean column: one "
           "comparison per method; the dataset columns: every method x dataset), family-wise error 5% in each. "
           "For FID and KID, lower is better.",
           "- Rel. promotion: Diff-Tuning's \"relative promotion\", the mean over datasets of "
           "(full-ft − method) / full-ft, computed per seed; positive is better than full fine-tuning.",
           "- MDE: minimum detectable effect of a relative promotion, in points: the smallest true promotion a "
           "two-sided paired t-test at 5% detects with 80% power, given that cell's per-seed spread and seeds.",
           *(f"- {text}" for key, text in LEGEND.items() if key != "seed"),
           "- Paper numbers without a mark were read in the paper's own text.",
           "- Results of different task versions or profiles are never aggregated together; each has its own section.",
           ""]
    if not tables:
        out += ["No usable results yet.", ""]
    last = None
    for t in tables:
        section = (t.key, t.profile)
        first_table = section != last
        if first_table:
            last = section
            out += [f"## {t.key} — profile `{t.profile}`", ""]
            seeds = ", ".join(map(str, t.expected_seeds)) or "?"
            out.append(f"Task seeds: {seeds}. Datasets in task order.")
            if not comparable(t):
                out.append(f"The papers' numbers are for the full-scale setting and sit in their own table below "
                           f"each of ours; the `{t.profile}` profile uses stand-in data and models, so compare "
                           "rankings, not values.")
            if t.profile not in RERUN_PROFILES:
                out.append("**Submitted, not re-run**: results of this profile cannot be re-run in CI; they are "
                           "accepted with full provenance (`bench verify`) until someone re-runs them.")
            out.append("")
            out += preconditions_markdown(t.regime, t.task)
        direction = "lower is better" if t.metric.lower_is_better else "higher is better"
        out += [f"### {t.metric.title} ({direction})", "", *table_markdown(t), ""]
        promo = promotion_markdown(t)
        if promo:
            out += [f"Relative promotion over full-ft per dataset ({t.metric.title}; per-seed, paired):", "",
                    *promo, ""]
        verdict = verdicts(t)
        if verdict:
            out += [f"Against full fine-tuning ({t.metric.title}):", "", *verdict, ""]
        out += head_to_head_markdown(t)
        paper = [] if comparable(t) else reported_markdown(t)
        if paper:
            out += [f"Reported in the papers ({t.metric.title}; full scale, not comparable with the `{t.profile}` "
                    "numbers above; sources below):", "", *paper, ""]
        src = _sources(t)
        if src:
            out += ["Paper sources:", "", *src, ""]
        if t.notes:
            out += ["Notes:", "", *(f"- {n}" for n in sorted(t.notes)), ""]
        missing = sorted({(r.method, r.config_hash, ds, tuple(c.missing_seeds)) for r in t.rows
                          for ds, c in r.cells.items() if c.missing_seeds})
        if missing:
            out += ["Incomplete cells (seeds with no result file yet, not averaged in):", ""]
            out += [f"- {m} [{h}] {ds}: missing seed(s) {', '.join(map(str, s))}" for m, h, ds, s in missing]
            out.append("")
        figs = figure_links.get(f"{t.key}/{t.profile}") if first_table else None
        if figs:
            out += ["Figures:", "", *(f"- [{title}]({link})" for title, link in figs), ""]
    if reported_only:
        out += ["## Reported by the papers, not yet reproduced here", "",
                md_row(["Task", "Metric", "Method", "Dataset", "Reported", "Source"]),
                md_row(["---", "---", "---", "---", "---:", "---"])]
        for r in sorted(reported_only, key=lambda r: (r.task, r.metric, r.method, r.dataset)):
            out.append(md_row([r.task, r.metric, r.method, r.dataset, f"{r.value:g}{r.mark}", r.source]))
        out.append("")
    if excluded:
        out += ["## Excluded result files", "", "These files could not be used and are not in any number above:", ""]
        out += [f"- `{line}`" for line in excluded]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def _g(x: float | None) -> str:
    return "" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.6g}"


def _csv(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def reproduced_csv(tables: list[Table]) -> str:
    header = ["task", "task_version", "profile", "metric", "method", "config_hash", "steps", "budget_override",
              "dataset", "mean", "ci95_low", "ci95_high", "std", "n", "n_expected", "seeds", "missing_seeds",
              "diff_vs_full_ft", "diff_ci95_low", "diff_ci95_high", "significant_vs_full_ft",
              "relative_promotion", "promotion_ci95_low", "promotion_ci95_high",
              "p_vs_full_ft", "p_holm_vs_full_ft", "promotion_mde"]
    rows = []
    for t in tables:
        for r in t.rows:
            if r.reported_only:
                continue
            for ds in [*t.datasets, "mean"]:
                c = r.mean if ds == "mean" else r.cells.get(ds)
                if c is None:
                    continue
                iv, d, p = c.interval, c.vs_baseline, r.promotion.get(ds)
                rows.append([t.task, t.version, t.profile, t.metric.key, r.method, r.config_hash, r.steps,
                             int(r.budget_override), ds, _g(iv.mean), _g(iv.low), _g(iv.high), _g(iv.std), iv.n,
                             len(t.expected_seeds), " ".join(map(str, c.seeds)), " ".join(map(str, c.missing_seeds)),
                             _g(d.mean if d else None), _g(d.low if d else None), _g(d.high if d else None),
                             c.significant, _g(p.interval.mean if p else None), _g(p.interval.low if p else None),
                             _g(p.interval.high if p else None), _g(c.p_value), _g(c.p_holm), _g(p.mde if p else None)])
    return _csv(header, rows)


def reported_csv(reported: list[ReportedValue]) -> str:
    header = ["task", "metric", "method", "dataset", "reported", "confidence", "source", "entry", "note"]
    rows = [[r.task, r.metric, r.method, r.dataset, f"{r.value:g}", r.confidence, r.source, r.entry, r.note or ""]
            for r in sorted(reported, key=lambda r: (r.task, r.metric, r.method, r.dataset))]
    return _csv(header, rows)


def write_text(path: Path, text: str) -> None:
    """Atomic, so an interrupted regeneration never leaves half a table for CI to compare."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp, path)


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
