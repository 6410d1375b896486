"""One colour per method in every figure (bench/report/colours.py): every method registered today,
its `X+diff-tuning` compositions and every method in results/ get pairwise-distinct colours, a
method's colour depends on its name only (not on the other methods in a figure, nor on the
process), and the figures draw with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT
from matplotlib.colors import to_hex
from matplotlib.container import BarContainer, ErrorbarContainer
from test_report_analysis_figures import SLUG, load, populate, write

from bench.registry import composed_names, method_names
from bench.report.colours import KIN, METHODS, OWN, method_colour, styles
from bench.report.figures import plan_figures


def _methods_today() -> list[str]:
    """Registered methods, their `X+diff-tuning` compositions, and any other name in results/."""
    in_results = set()
    for p in (ROOT / "results").rglob("*.json"):
        method = json.loads(p.read_text()).get("method")
        if isinstance(method, str):
            in_results.add(method)
    assert {"lora+diff-tuning", "vpt-deep+diff-tuning"} <= set(composed_names())
    return sorted({*method_names(), *composed_names(), *in_results})


def test_every_method_today_has_its_own_colour():
    names = _methods_today()
    colours = {n: method_colour(n) for n in names}
    clashes = {c: [n for n in names if colours[n] == c] for c in set(colours.values())}
    assert len(set(colours.values())) == len(names), {c: ns for c, ns in clashes.items() if len(ns) > 1}
    # a new built-in (or committed peft config) is given a colour, not left to the hash
    assert set(method_names()) <= set(METHODS) | set(OWN) | set(KIN)


def test_unknown_names_are_stable_and_never_take_a_known_colour():
    known = {method_colour(n) for n in _methods_today()}
    unknown = ["my-plugin", "lora+difffit", "bitfit+a3ft", "x" * 40]
    assert not known & {method_colour(n) for n in unknown}
    # The same in another process with another str-hash salt: colours survive a rerun.
    code = "import sys; from bench.report.colours import method_colour; print(*map(method_colour, sys.argv[1:]))"
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code, *unknown], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}, cwd=ROOT).stdout.split()
        assert out == [method_colour(n) for n in unknown]


def test_settings_of_one_method_share_its_colour_and_differ_in_variant():
    st = styles({"diff-tuning": "diff-tuning", "diff-tuning (tau=0)": "diff-tuning", "full-ft": "full-ft"})
    assert st["diff-tuning"].colour == st["diff-tuning (tau=0)"].colour == method_colour("diff-tuning")
    assert (st["diff-tuning"].variant, st["diff-tuning (tau=0)"].variant, st["full-ft"].variant) == (0, 1, 0)
    assert st["diff-tuning"].linestyle != st["diff-tuning (tau=0)"].linestyle


def _efficiency_colours(methods: list[str], tmp_path) -> dict[str, str]:
    """method -> colour of its points in the efficiency figure of results holding just `methods`."""
    for m in methods:
        for seed in range(2):
            write(tmp_path, m, "food101", seed, 20.0 + len(m) + seed)
    spec = next(s for s in plan_figures(load(tmp_path))[0] if s.name == f"{SLUG}-efficiency")
    ax = spec.draw().axes[0]
    return {c.get_label().split(" [")[0]: to_hex(c.lines[0].get_color())
            for c in ax.containers if isinstance(c, ErrorbarContainer)}


def test_a_methods_colour_does_not_depend_on_the_other_methods_in_the_figure(tmp_path):
    few = _efficiency_colours(["full-ft", "lora+diff-tuning"], tmp_path / "few")
    many_methods = ["full-ft", "diff-tuning", "lora", "bitfit", "adaptformer", "vpt-deep", "difffit", "attention-ft",
                    "a3ft", "lora+diff-tuning", "bitfit+diff-tuning", "adaptformer+diff-tuning"]
    many = _efficiency_colours(many_methods, tmp_path / "many")
    assert set(many) == set(many_methods)
    assert few == {m: method_colour(m) for m in few}
    assert many == {m: method_colour(m) for m in many}
    assert len(set(many.values())) == len(many)  # 12 methods in one figure, 12 colours


def test_analysis_figures_draw_each_method_in_its_colour(tmp_path):
    populate(tmp_path)
    specs = {s.name: s for s in plan_figures(load(tmp_path))[0]}
    full, diff = method_colour("full-ft"), method_colour("diff-tuning")
    ax = specs[f"{SLUG}-convergence"].draw().axes[0]
    assert {ln.get_label(): to_hex(ln.get_color()) for ln in ax.get_lines()} == {"full-ft (n=2)": full,
                                                                                "diff-tuning (n=2)": diff}
    ax = specs[f"{SLUG}-ablation-diff-tuning"].draw().axes[0]
    bars = [to_hex(p.get_facecolor()) for c in ax.containers if isinstance(c, BarContainer) for p in c.patches]
    # full-ft, then diff-tuning's arms (the one-part arms hatched) and its oracle-bank run
    assert bars == [full, diff, diff, diff, diff]
    ax = specs[f"{SLUG}-sweep-diff-tuning-tau"].draw().axes[0]
    series = {c.get_label(): c.lines[0] for c in ax.containers if isinstance(c, ErrorbarContainer)}
    assert {to_hex(ln.get_color()) for ln in series.values()} == {diff}
    assert len({ln.get_linestyle() for ln in series.values()}) == len(series)  # settings told apart by style
    ref = [ln for ln in ax.get_lines() if ln.get_label().startswith("full-ft")]
    assert [to_hex(ln.get_color()) for ln in ref] == [full]
