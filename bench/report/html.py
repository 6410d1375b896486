"""A static, self-contained HTML leaderboard: the same tables as LEADERBOARD.md, sortable by
clicking a column header (a few lines of inline JS, no external files), with the figures embedded
as PNG data URIs. A view can be linked sorted: index.html#sort=<table-id>:<column>:<asc|desc>
clicks that header on load, exactly as a reader would.
"""

from __future__ import annotations

import base64
import math
from html import escape

from bench.report.aggregate import BASELINE, Table
from bench.report.figures import FigureSpec, render
from bench.report.leaderboard import (DOWN, UP, _promotion_summary, cell_text, comparable, pct_text,
                                      reported_promotion_text, reported_text, row_config)
from bench.report.reported import LEGEND, ReportedValue

CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:100%}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#f0f0f0;cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
td.name,th.name{text-align:left}td.paper{color:#666;background:#fafafa}
tr.baseline td{font-weight:bold}tr.reported-only td{color:#888}
.wrap{overflow-x:auto}figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}
"""

# Sort by data-sort (numbers numerically, empty cells always last); aria-sort tells the state.
JS = """
function sortBy(th){
  var table=th.closest('table'), body=table.tBodies[0], col=th.cellIndex;
  var dir=th.getAttribute('aria-sort')==='ascending'?'descending':'ascending';
  table.querySelectorAll('th').forEach(function(h){h.removeAttribute('aria-sort');});
  th.setAttribute('aria-sort',dir);
  var rows=Array.prototype.slice.call(body.rows), sign=dir==='ascending'?1:-1;
  rows.sort(function(a,b){
    var x=a.cells[col].getAttribute('data-sort'), y=b.cells[col].getAttribute('data-sort');
    if(x===''||x===null) return (y===''||y===null)?0:1;
    if(y===''||y===null) return -1;
    var nx=parseFloat(x), ny=parseFloat(y);
    var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);
    return sign*c;
  });
  rows.forEach(function(r){body.appendChild(r);});
}
document.querySelectorAll('table.sortable th').forEach(function(th){
  th.addEventListener('click',function(){sortBy(th);});
});
var m=/#sort=([^:]+):([^:]+):(asc|desc)/.exec(decodeURIComponent(location.hash));
if(m){var t=document.getElementById(m[1]);
  if(t){t.querySelectorAll('th').forEach(function(th){
    if(th.getAttribute('data-col')===m[2]){th.click(); if(m[3]==='desc') th.click();}});}}
window.addEventListener('load',function(){
  var ok=0; document.querySelectorAll('img').forEach(function(i){if(i.naturalWidth>0) ok++;});
  document.body.setAttribute('data-images-decoded',String(ok));
});
document.body.setAttribute('data-ready','1');
"""


def _num(x: float | None) -> str:
    return "" if x is None or not math.isfinite(x) else repr(round(x, 10))


def _td(text: str, sort: str | float | None, cls: str = "") -> str:
    s = sort if isinstance(sort, str) else _num(sort)
    c = f' class="{cls}"' if cls else ""
    return f'<td{c} data-sort="{escape(s)}">{escape(text)}</td>'


def table_html(t: Table) -> str:
    """As LEADERBOARD.md: a `paper` column after each of ours only where comparable(t)."""
    d, n_exp = t.metric.digits, len(t.expected_seeds)
    paper = comparable(t)
    cols = [("method", "Method", "name"), ("config", "Config", "name")]
    for key, label in [*((ds, ds) for ds in t.datasets), ("mean", "Mean"), ("promotion", "Rel. promotion")]:
        cols += [(key, label, "")] + ([(f"{key}-paper", "paper", "paper")] if paper else [])
    head = "".join(f'<th data-col="{escape(k)}" class="{c}">{escape(label)}</th>' for k, label, c in cols)
    body = []
    for row in t.rows if paper else [r for r in t.rows if not r.reported_only]:
        cls = "baseline" if row.method == BASELINE and not row.reported_only else (
            "reported-only" if row.reported_only else "")
        cells = [_td(row.method, row.method, "name"), _td(row_config(row), row_config(row), "name")]
        for ds in [*t.datasets, "mean"]:
            c = row.mean if ds == "mean" else row.cells.get(ds)
            text = "" if row.reported_only else cell_text(c, d, n_exp)
            cells.append(_td(text, None if c is None or row.reported_only else c.interval.mean))
            if paper:
                rep = t.reported.get((row.method, ds))
                cells.append(_td(reported_text(rep, d), rep.value if rep else None, "paper"))
        promo = row.promotion.get("mean")
        cells.append(_td(_promotion_summary(row, t), promo.interval.mean if promo else None))
        if paper:
            rep = t.reported_promotion.get((row.method, "mean"))
            cells.append(_td(reported_text(rep, 0, percent=True), rep.value if rep else None, "paper"))
        body.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
    return (f'<div class="wrap"><table class="sortable" id="{escape(t.slug)}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _reported_html(t: Table) -> str:
    """The papers' numbers of a non-comparable profile, in a table of their own (as LEADERBOARD.md)."""
    if comparable(t):
        return ""
    methods = sorted({m for m, _ in t.reported} | {m for m, _ in t.reported_promotion},
                     key=lambda m: (m != BASELINE, m))
    if not methods:
        return ""
    d = t.metric.digits
    cols = ["method", *t.datasets, "mean", "promotion"]
    head = "".join(f'<th data-col="{escape(c)}" class="{"name" if c == "method" else ""}">{escape(c)}</th>'
                   for c in cols)
    body = []
    for m in methods:
        cells = [_td(m, m, "name")]
        for ds in [*t.datasets, "mean"]:
            rep = t.reported.get((m, ds))
            cells.append(_td(reported_text(rep, d), rep.value if rep else None))
        rep = t.reported_promotion.get((m, "mean"))
        cells.append(_td(reported_promotion_text(t, m), rep.value if rep else None))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<p>Reported in the papers ({escape(t.metric.title)}; full scale, not comparable with the "
            f"{escape(t.profile)} numbers above):</p>"
            f'<div class="wrap"><table class="sortable" id="{escape(t.slug)}-reported"><thead><tr>{head}</tr>'
            f'</thead><tbody>{"".join(body)}</tbody></table></div>')


def _promotion_html(t: Table) -> str:
    rows = [r for r in t.rows if r.promotion]
    if not rows:
        return ""
    head = "".join(f'<th data-col="{escape(c)}" class="{"name" if c in ("method", "config") else ""}">{escape(c)}</th>'
                   for c in ["method", "config", *t.datasets, "mean"])
    body = []
    for r in rows:
        cells = [_td(r.method, r.method, "name"), _td(row_config(r), row_config(r), "name")]
        for ds in [*t.datasets, "mean"]:
            c = r.promotion.get(ds)
            cells.append(_td(pct_text(c), c.interval.mean if c else None))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<p>Relative promotion over full-ft per dataset ({escape(t.metric.title)}; per seed, paired):</p>"
            f'<div class="wrap"><table class="sortable" id="{escape(t.slug)}-promotion"><thead><tr>{head}</tr>'
            f'</thead><tbody>{"".join(body)}</tbody></table></div>')


def _figure_html(spec: FigureSpec, embed: bool) -> str:
    src = ("data:image/png;base64," + base64.b64encode(render(spec, "png")).decode()
           if embed else f"figures/{spec.name}.png")
    return f'<figure><img alt="{escape(spec.title)}" src="{src}"><figcaption>{escape(spec.title)}</figcaption></figure>'


def simple_table_html(t, table_id: str) -> str:
    """A SimpleTable (bench/report/extras.py), sortable like the leaderboard's tables."""
    head = "".join(f'<th data-col="{i}">{escape(h)}</th>' for i, h in enumerate(t.header))
    def lead(text: str):  # a number column sorts by its leading number ("12.3 ± 0.4", "1,234")
        try:
            return float(text.split()[0].replace(",", ""))
        except (ValueError, IndexError):
            return text

    rows = "".join("<tr>" + "".join(_td(c, c, "name") if i < t.text_columns else _td(c, lead(c)) for i, c in enumerate(r))
                   + "</tr>" for r in t.rows)
    return f'<table class="sortable" id="{escape(table_id)}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def render_html(tables: list[Table], *, figures: list[FigureSpec], excluded: list[str],
                reported_only: list[ReportedValue], embed_figures: bool = True, frontier=()) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           "<title>Leaderboard: transfer learning of diffusion models</title>", f"<style>{CSS}</style></head><body>",
           "<h1>Leaderboard: transfer learning of diffusion models</h1>",
           "<p>Generated by <code>bench leaderboard</code> from result files. Reproduced cells: mean over seeds ± "
           "half-width of the 95% Student-t interval (n seeds). The papers' numbers (reference/reported.yaml) are "
           "never mixed with reproduced ones: <em>paper</em> columns under the paper profile, tables of their own "
           "under any other. Click a column header to sort.</p>",
           "<ul>",
           f"<li>{DOWN} / {UP}: (method − full-ft) below / above zero by a paired t-test over shared seeds, "
           "significant after Holm-Bonferroni correction within its family (the Mean column; the dataset columns; "
           "family-wise 5% each; lower is better).</li>",
           "<li>Rel. promotion: mean over datasets of (full-ft − method) / full-ft, per seed. MDE: the smallest "
           "true promotion (points) a paired t-test at 5% detects with 80% power, from that cell's spread.</li>",
           *(f"<li>{escape(text)}</li>" for key, text in LEGEND.items() if key != "seed"),
           "</ul>"]
    if not tables:
        out.append("<p>No usable results yet.</p>")
    last = None
    for t in tables:
        if (t.key, t.profile) != last:
            last = (t.key, t.profile)
            out.append(f"<h2>{escape(t.key)} — profile <code>{escape(t.profile)}</code></h2>")
            if t.profile != "paper":
                out.append(f"<p>The papers' full-scale numbers sit in tables of their own; the {escape(t.profile)} "
                           "profile uses stand-in data and models, so compare rankings, not values.</p>")
        out += [f"<h3>{escape(t.metric.title)}</h3>", table_html(t), _promotion_html(t), _reported_html(t)]
        srcs = sorted({(r.entry, r.source) for r in [*t.reported.values(), *t.reported_promotion.values()]})
        if srcs:
            out.append("<p>Paper sources:</p><ul>" + "".join(f"<li><code>{escape(e)}</code>: {escape(s)}</li>"
                                                             for e, s in srcs) + "</ul>")
        if t.metric.key == "fid":
            for spec in [f for f in figures if f.section == f"{t.key}/{t.profile}" and not f.name.endswith("-frontier")]:
                out.append(_figure_html(spec, embed_figures))
    if frontier:
        out.append("<h2>Quality-cost frontier</h2><p>The final metric (mean ± 95% CI half-width over seeds) against "
                   "trainable parameters, peak memory and training time (measured on the machine that ran each "
                   "result). Front: on the Pareto front of its dataset for P (parameters), M (memory), T (time).</p>")
        for t in frontier:
            out += [f"<h3>{escape(t.section)}</h3>", simple_table_html(t, t.slug)]
            out += [_figure_html(spec, embed_figures) for spec in figures
                    if spec.section == t.section and spec.name.endswith("-frontier")]
    if reported_only:
        out.append("<h2>Reported by the papers, not yet reproduced here</h2>")
        out.append('<table class="sortable" id="reported-only"><thead><tr>' + "".join(
            f'<th data-col="{c}">{c}</th>' for c in ["task", "metric", "method", "dataset", "reported", "source"])
            + "</tr></thead><tbody>")
        for r in sorted(reported_only, key=lambda r: (r.task, r.metric, r.method, r.dataset)):
            out.append("<tr>" + "".join([_td(r.task, r.task, "name"), _td(r.metric, r.metric, "name"),
                                         _td(r.method, r.method, "name"), _td(r.dataset, r.dataset, "name"),
                                         _td(f"{r.value:g}{r.mark}", r.value), _td(r.source, r.source, "name")])
                       + "</tr>")
        out.append("</tbody></table>")
    if excluded:
        out.append("<h2>Excluded result files</h2><ul>" + "".join(f"<li><code>{escape(x)}</code></li>"
                                                                   for x in excluded) + "</ul>")
    out.append(f"<script>{JS}</script></body></html>")
    return "\n".join(out) + "\n"
