"""Tables for the analyses behind the figures: chain of forgetting (FID per fraction of reverse
steps given back to the pre-trained model) and EWC per method. Same conventions as the leaderboard:
mean ± 95% CI half-width over seeds, n seeds, one section per task version and profile. EWC is
printed in scientific notation (its values are ~1e-6) with its ratio to full fine-tuning, paired by
dataset and seed."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.report.load import BASELINE, ResultSet, section_key_str
from bench.stats import Interval, t_interval


@dataclass
class SimpleTable:
    section: str
    slug: str
    title: str
    header: list[str]
    rows: list[list[str]]  # display text
    csv_header: list[str]
    csv_rows: list[list]
    text_columns: int = 3  # left-aligned in Markdown; the rest are numbers, right-aligned


def md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def extras_markdown(tables: list[SimpleTable]) -> str:
    """Markdown of simple tables, each under a heading with its section."""
    out = []
    for t in tables:
        out += [f"### {t.title} — {t.section}", "", md_row(t.header),
                md_row(["---"] * t.text_columns + ["---:"] * (len(t.header) - t.text_columns)), *(md_row(r) for r in t.rows), ""]
    return "\n".join(out)


def _ci(vals: list[float], digits: int) -> str:
    iv = t_interval(vals)
    if iv.n >= 2 and math.isfinite(iv.half_width):
        return f"{iv.mean:.{digits}f} ± {iv.half_width:.{digits}f} (n={iv.n})"
    return f"{iv.mean:.{digits}f} (no CI) (n={iv.n})"


def _g(x: float) -> str:
    return "" if not math.isfinite(x) else f"{x:.6g}"


def of_analysis(rs: ResultSet, name: str) -> list:
    return [a for a in rs.analyses if a.data.analysis == name]


def chain_tables(rs: ResultSet) -> list[SimpleTable]:
    out = []
    analyses = of_analysis(rs, "chain-of-forgetting")
    for section in sorted({a.section for a in analyses}):
        items = [a.data for a in analyses if a.section == section]
        fracs = sorted({round(p.fraction, 6) for a in items for p in a.points})
        groups: dict[tuple, list] = {}
        for a in items:
            groups.setdefault((a.method, a.config_hash, a.dataset), []).append(a)
        rows, csv_rows = [], []
        for (method, cfg, ds), group in sorted(groups.items()):
            row = [method, cfg, ds]
            for f in fracs:
                vals = [p.fid for a in group for p in a.points if round(p.fraction, 6) == f]
                row.append(_ci(vals, 2) if vals else "—")
                if vals:
                    iv = t_interval(vals)
                    csv_rows.append([*section, method, cfg, ds, f, _g(iv.mean), _g(iv.low), _g(iv.high), iv.n,
                                     " ".join(str(a.seed) for a in sorted(group, key=lambda a: a.seed))])
            rows.append(row)
        task, version, profile = section
        out.append(SimpleTable(section_key_str(section), f"{task}-v{version}-{profile}-chain-of-forgetting",
                               "Chain of forgetting: FID when the pre-trained denoiser runs this fraction of the "
                               "reverse steps, from the data end", ["Method", "Config", "Dataset",
                                                                    *(f"{f:.0%}" for f in fracs)],
                               rows, ["task", "task_version", "profile", "method", "config_hash", "dataset",
                                      "fraction", "fid_mean", "ci95_low", "ci95_high", "n", "seeds"], csv_rows))
    return out


EPS_COLUMNS = 5  # timesteps shown in the Markdown table (the CSV has every one)


def eps_mse_tables(rs: ResultSet) -> list[SimpleTable]:
    """Epsilon MSE of each fine-tuned model relative to the pre-trained one on the same images, noise
    and timesteps, per timestep: mean ± 95% CI over seeds (< 1: the fine-tuned model denoises the
    target better there)."""
    out = []
    analyses = of_analysis(rs, "eps-mse")
    for section in sorted({a.section for a in analyses}):
        groups: dict[tuple, list] = {}
        for a in analyses:
            if a.section == section:
                groups.setdefault((a.data.method, a.data.config_hash, a.data.dataset), []).append(a.data)
        ts = sorted({p.t for g in groups.values() for a in g for p in a.points})
        shown = ts[:: max(1, -(-len(ts) // EPS_COLUMNS))]
        if ts[-1] not in shown:
            shown.append(ts[-1])
        rows, csv_rows = [], []
        for (method, cfg, ds), group in sorted(groups.items()):
            row = [method, cfg, ds]
            for t in ts:
                vals = [p.relative for a in group for p in a.points if p.t == t and p.relative is not None]
                if t in shown:
                    row.append(_ci(vals, 3) if vals else "—")
                if vals:
                    iv = t_interval(vals)
                    base = [p.mse_pretrained for a in group for p in a.points if p.t == t]
                    csv_rows.append([*section, method, cfg, ds, t, _g(iv.mean), _g(iv.low), _g(iv.high), iv.n,
                                     _g(sum(base) / len(base)),
                                     " ".join(str(a.seed) for a in sorted(group, key=lambda a: a.seed))])
            rows.append(row + [_rebuilt(group)])
        task, version, profile = section
        out.append(SimpleTable(section_key_str(section), f"{task}-v{version}-{profile}-eps-mse",
                               "Epsilon MSE relative to the pre-trained model at timestep t, on the target's "
                               "evaluation images (same images and noise for every model; < 1: better than "
                               "the pre-trained model; every timestep in the CSV; Re-trained: models rebuilt by `--retrain` "
                               "for want of checkpoints, and how many match their result's final state bit for bit)",
                               ["Method", "Config", "Dataset", *(f"t={t}" for t in shown), "Re-trained"], rows,
                               ["task", "task_version", "profile", "method", "config_hash", "dataset", "t",
                                "relative_mean", "ci95_low", "ci95_high", "n", "mse_pretrained_mean", "seeds"],
                               csv_rows))
    return out


def _rebuilt(group: list) -> str:
    """How many of the models were re-trained here (`--retrain`: the cache lacked the run's
    checkpoints), and how many of those match the final state their result records bit for bit."""
    rebuilt = [r for r in ((getattr(a, "run", None) or {}).get("rebuilt") for a in group) if r]
    if not rebuilt:
        return "0"
    return f"{len(rebuilt)} ({sum(1 for r in rebuilt if r.get('matches'))} bit-identical)"


def bank_quality_tables(rs: ResultSet) -> list[SimpleTable]:
    """FID of Diff-Tuning's knowledge bank against the source's held-out split, beside a real held-out
    split of the same size against the same reference (the floor)."""
    out = []
    analyses = of_analysis(rs, "bank-quality")
    for section in sorted({a.section for a in analyses}):
        rows, csv_rows = [], []
        for a in sorted((a.data for a in analyses if a.section == section), key=lambda a: (a.config_hash, a.seed)):
            v = a.values
            rows.append([a.config_hash, str(a.seed), f"{v['fid_bank']:.3f}", f"{v['fid_real']:.3f}",
                         f"{v['fid_gap']:.3f}", f"{v['fid_ratio']:.3f}"])
            csv_rows.append([*section, a.config_hash, a.seed, _g(v["fid_bank"]), _g(v["fid_real"]),
                             _g(v["fid_gap"]), _g(v["fid_ratio"])])
        task, version, profile = section
        out.append(SimpleTable(section_key_str(section), f"{task}-v{version}-{profile}-bank-quality",
                               "Knowledge bank quality: FID of the bank and of a real held-out source split of the "
                               "same size, against the same held-out source reference",
                               ["Config", "Bank seed", "FID bank", "FID real (floor)", "Gap", "Ratio"], rows,
                               ["task", "task_version", "profile", "config_hash", "bank_seed", "fid_bank", "fid_real",
                                "fid_gap", "fid_ratio"], csv_rows, text_columns=2))
    return out


def _sci_ci(vals: list[float]) -> str:
    """Mean ± 95% CI half-width in scientific notation: EWC of a fine-tuned DiT is ~1e-6, which
    fixed-point formatting rounds to 0.0000 for every method."""
    iv = t_interval(vals)
    if iv.n >= 2 and math.isfinite(iv.half_width):
        return f"{iv.mean:.3e} ± {iv.half_width:.1e} (n={iv.n})"
    return f"{iv.mean:.3e} (no CI) (n={iv.n})"


def _ewc_baseline(groups: dict[tuple, list], ds: str, steps: int) -> list | None:
    """The full-ft runs of a dataset with the same training budget (the leaderboard's pairing:
    bench/report/aggregate.py, Table.baseline_row): the config with the most seeds."""
    cands = [(cfg, g) for (m, cfg, d), g in groups.items() if m == BASELINE and d == ds and _steps(g) == steps]
    if not cands:
        return None
    return max(cands, key=lambda c: (len(c[1]), c[0]))[1]


def _steps(group: list) -> int:
    return int(group[0].budget.get("steps", group[0].training.steps))


def ewc_ratio(group: list, base: list) -> Interval | None:
    """Total EWC relative to full fine-tuning: the t interval over seeds of method[s] / full-ft[s],
    paired by seed on the same dataset (as the leaderboard's paired comparisons); None with no
    shared seed or a zero baseline."""
    b = {g.seed: g.metrics.ewc.total for g in base}
    ratios = [g.metrics.ewc.total / b[g.seed] for g in sorted(group, key=lambda g: g.seed)
              if g.seed in b and b[g.seed] > 0]
    return t_interval(ratios) if ratios else None


def _ratio_text(iv) -> str:
    if iv is None:
        return "—"
    if iv.n >= 2 and math.isfinite(iv.half_width):
        return f"{iv.mean:.3f} ± {iv.half_width:.3f} (n={iv.n})"
    return f"{iv.mean:.3f} (no CI) (n={iv.n})"


def ewc_tables(rs: ResultSet) -> list[SimpleTable]:
    out = []
    runs = [r for r in rs.runs if r.data.metrics.ewc is not None]
    for section in sorted({r.section for r in runs}):
        groups: dict[tuple, list] = {}
        for r in runs:
            if r.section == section:
                groups.setdefault((r.data.method, r.data.config_hash, r.data.dataset), []).append(r.data)
        rows, csv_rows = [], []
        for (method, cfg, ds), group in sorted(groups.items()):
            tot = [g.metrics.ewc.total for g in group]
            mean = [g.metrics.ewc.mean for g in group]
            base = _ewc_baseline(groups, ds, _steps(group))
            is_base = method == BASELINE and base is group
            ratio = None if base is None or is_base else ewc_ratio(group, base)
            rows.append([method, cfg, ds, _sci_ci(tot), _sci_ci(mean),
                         "1 (baseline)" if is_base else _ratio_text(ratio), str(group[0].metrics.ewc.n_params)])
            it, im = t_interval(tot), t_interval(mean)
            rv = [_g(ratio.mean), _g(ratio.low), _g(ratio.high), ratio.n] if ratio is not None else ["", "", "", ""]
            csv_rows.append([*section, method, cfg, ds, _g(it.mean), _g(it.low), _g(it.high), _g(im.mean),
                             _g(im.low), _g(im.high), it.n, group[0].metrics.ewc.n_params, *rv])
        task, version, profile = section
        out.append(SimpleTable(section_key_str(section), f"{task}-v{version}-{profile}-ewc",
                               "EWC per method: total and mean over tunable parameters of F·(θ − θ_pre)² "
                               "(lower = less forgetting); ratio = total EWC / full-ft's, paired by seed",
                               ["Method", "Config", "Dataset", "EWC total", "EWC mean", "Total / full-ft",
                                "tunable params"], rows,
                               ["task", "task_version", "profile", "method", "config_hash", "dataset", "total_mean",
                                "total_ci95_low", "total_ci95_high", "mean_mean", "mean_ci95_low", "mean_ci95_high",
                                "n", "n_params", "ratio_to_full_ft", "ratio_ci95_low", "ratio_ci95_high",
                                "ratio_n"], csv_rows))
    return out
