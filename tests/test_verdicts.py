"""Verdicts worded by power (issue 29): one classifier of five kinds (bench/verdicts.py), used by
every verdict line of LEADERBOARD.md; ControlNet crossings at the first evaluation are "at start"
and never averaged as a step."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import ROOT

from bench.families.controlnet import report as cn
from bench.tracking_rules import FirstBelow
from bench.verdicts import (HEADS, KINDS, NO_EFFECT, classify, kind_of_line, min_detectable_effect,
                            units_for_power, units_to_decide)

NAN = float("nan")


@pytest.mark.parametrize("low, high, effect, sign, margin, regime, kind", [
    (0.1, 0.5, 0.24, None, None, None, "supports"),          # excludes 0 on the paper's side
    (-0.5, -0.1, 0.24, None, None, None, "contradicts"),     # the other side of 0
    (-0.05, 0.1, 0.24, None, None, None, "contradicts"),     # contains 0, excludes the paper's value
    (-0.5, 0.5, 0.24, None, None, None, "inconclusive"),     # contains both
    (-0.02, 0.03, 0.01, None, 0.05, None, "equivalent"),     # inside the margin, contains the paper's value
    (0.1, 0.5, 0.24, None, None, "no sudden transition", "out-of-regime"),
    (-0.3, -0.1, None, -1, None, None, "supports"),          # a direction-only claim
    (0.1, 0.3, None, -1, None, None, "contradicts"),
    (-0.3, 0.1, None, -1, None, None, "inconclusive"),
    (0.1, 0.3, None, None, None, None, "inconclusive"),      # no claim at all: never "supports"
    (NAN, NAN, 0.24, None, None, None, "inconclusive"),
])
def test_classify_gives_each_kind(low, high, effect, sign, margin, regime, kind):
    v = classify(low, high, paper_effect=effect, paper_sign=sign, margin=margin, out_of_regime=regime, sd=0.3, n=3)
    assert v.kind == kind and kind_of_line(v.text) == kind
    assert ("the paper's" in v.text) or (NO_EFFECT in v.text)


def test_inconclusive_says_how_many_units_decide_it():
    v = classify(-0.5, 0.5, paper_effect=0.24, sd=0.4, n=3, unit="seeds")
    assert v.units_needed is not None and v.units_needed > 3 and f"about {v.units_needed} seeds" in v.text
    # more spread or a smaller effect needs more units
    assert units_to_decide(0.8, 0.24, 3) > units_to_decide(0.4, 0.24, 3) > units_to_decide(0.4, 0.48, 3)


def test_units_for_power_matches_a_simulated_paired_t_test():
    """The power calculation against a Monte Carlo of the test it sizes: at the returned n a paired
    t test at level alpha detects the effect at least 80% of the time, at n - 1 it does not."""
    from scipy import stats

    sd, effect, alpha = 0.218, 0.24, 0.025  # the controlnet study's spread and the paper's +24%
    n = units_for_power(sd, effect, alpha)
    rng = np.random.default_rng(0)

    def detected(k: int) -> float:
        d = rng.normal(effect, sd, size=(20000, k))
        return float(np.mean(stats.ttest_1samp(d, 0.0, axis=1).pvalue < alpha))

    assert detected(n) >= 0.79 and detected(n - 1) < 0.80, (n, detected(n), detected(n - 1))
    assert units_to_decide(sd, effect, 6, alpha) > n  # a guarantee at the observed spread asks for more
    assert abs(min_detectable_effect(sd, n, alpha) - effect) < 0.03  # the MDE at that n is about the effect


def test_inconclusive_states_the_seeds_for_eighty_percent_power():
    v = classify(-0.28, 0.28, paper_effect=0.24, sd=0.218, n=6, alpha=0.025)
    assert f"; {units_for_power(0.218, 0.24, 0.025)} seeds give 80% power to detect it" in v.text


def verdict_lines(text: str) -> list[str]:
    """The verdict lines of a LEADERBOARD: the bullets under "Against full fine-tuning" and every
    study's bold-section bullets ("- **task@vN/profile**: ...")."""
    out, in_block = [], False
    for line in text.splitlines():
        if line.startswith("Against full fine-tuning"):
            in_block = True
            continue
        if in_block and line.startswith("- "):
            out.append(line)
            continue
        if in_block and line.strip():
            in_block = False
        if re.match(r"^- \*\*[^*]+@v\d+/[^*]+\*\*:", line):
            out.append(line)
    return out


def test_every_committed_verdict_line_is_one_of_five_kinds_and_names_the_papers_effect():
    lines = verdict_lines((ROOT / "LEADERBOARD.md").read_text())
    assert len(lines) >= 20
    for line in lines:
        kind = kind_of_line(line)
        assert kind in KINDS, line
        assert "the paper's" in line or NO_EFFECT in line, line
        if kind == "inconclusive" and "the paper's direction" not in line and NO_EFFECT not in line \
                and "no interval" not in line:
            assert re.search(r"(about \d+|more than \d+) \w", line), line  # says how many would decide it
    # the old, power-blind words are gone
    text = "\n".join(lines)
    for old in ("not distinguishable", "significantly earlier", "does not change the DINO dip"):
        assert old not in text


def test_heads_are_distinct():
    assert len(set(HEADS.values())) == len(HEADS) == len(KINDS)


def _fake(method, seed, curve, threshold=0.05):
    event = FirstBelow(metric="mse", threshold=threshold, hold=2).detect(curve)
    data = {"family": "controlnet", "method": method, "dataset": "depth", "seed": seed, "sweep": {},
            "task_overrides": {}, "budget_override": False, "tracking": {"curves": {"mse": curve}, "events": [event]}}
    return SimpleNamespace(data=SimpleNamespace(**{k: v for k, v in data.items() if k != "tracking"},
                                                model_dump=lambda mode=None: data))


def test_a_crossing_at_the_first_evaluation_is_at_start_and_never_averaged():
    low, high = 0.01, 0.2
    at_start = [[0, low], [25, low], [50, low]]
    later = [[0, high], [25, low], [50, low]]
    items = [_fake("controlnet", 0, at_start), _fake("controlnet", 1, later), _fake("controlnet", 2, later),
             _fake("controlnet+diff-tuning", 0, later), _fake("controlnet+diff-tuning", 1, later),
             _fake("controlnet+diff-tuning", 2, later)]
    g = cn.runs_by(items)
    reached, missing, start = cn.steps_of(g["controlnet"]["depth"])
    assert reached == {1: 25, 2: 25} and missing == 0 and start == 1
    avg = cn.average_steps(g["controlnet"], ["depth"])
    assert 0 not in avg and all(v > 0 for v in avg.values())
    sp, conds = cn.speedup(g, "controlnet+diff-tuning")
    assert sp == [] and conds == []  # a condition with an at-start seed is left out, never averaged as step 0
    lines = cn.verdict_lines(SimpleNamespace(runs=[SimpleNamespace(section=("t", 1, "tiny"), **vars(i))
                                                   for i in items], variants=[]), [])
    assert any("at start" in line and "depth: 1 seed" in line for line in lines)


def test_no_committed_at_start_crossing_is_averaged():
    """Over the committed ControlNet results: every run whose crossing is at its first evaluation
    is counted at start, and its seed is never among the averaged steps."""
    files = sorted((ROOT / "results").glob("controlnet-convergence@v*/tiny/**/seed*.json"))
    assert files
    seen = 0
    for f in files:
        raw = json.loads(f.read_text())
        if cn.at_start(raw):
            seen += 1
            reached, _, start = cn.steps_of({raw["seed"]: raw})
            assert reached == {} and start == 1
    board = (ROOT / "LEADERBOARD.md").read_text()
    if seen:
        assert "at start" in board
