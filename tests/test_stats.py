"""Paired tests, the Holm correction and the minimum detectable effect behind the leaderboard's
marks (bench/stats.py), checked against scipy and against the t distribution's own power."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from bench.stats import holm, minimum_detectable_effect, paired_p_value


def test_paired_p_value_is_scipys_paired_t_test_over_shared_seeds():
    rng = np.random.default_rng(0)
    a = {s: float(v) for s, v in enumerate(rng.normal(1.0, 1.0, 8))}
    b = {s: float(v) for s, v in enumerate(rng.normal(0.0, 1.0, 8))}
    b[99] = 5.0  # a seed only one side has is not paired
    ref = stats.ttest_rel([a[s] for s in range(8)], [b[s] for s in range(8)]).pvalue
    assert paired_p_value(a, b) == pytest.approx(ref, rel=1e-12)
    assert paired_p_value({0: 1.0}, {0: 2.0}) is None


def test_holm_step_down_by_hand():
    adj = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5})
    # sorted 0.01, 0.03, 0.04, 0.5: 4*0.01, max(., 3*0.03), max(., 2*0.04), max(., 1*0.5)
    assert adj == pytest.approx({"a": 0.04, "c": 0.09, "b": 0.09, "d": 0.5})
    assert holm({"x": 0.6, "y": 0.7}) == {"x": 1.0, "y": 1.0}  # capped at 1


@pytest.mark.parametrize("n", [3, 5, 10])
def test_minimum_detectable_effect_has_80_percent_power(n):
    sd = 2.0
    mde = minimum_detectable_effect(sd, n)
    crit = stats.t.ppf(0.975, n - 1)
    delta = mde / (sd / np.sqrt(n))
    power = stats.nct.sf(crit, n - 1, delta) + stats.nct.cdf(-crit, n - 1, delta)  # the test's exact power
    assert power == pytest.approx(0.8, abs=1e-6)
    # A Monte Carlo check of the same claim: paired differences with mean = MDE are detected ~80%.
    rng = np.random.default_rng(n)
    d = rng.normal(mde, sd, (20000, n))
    t = d.mean(1) / (d.std(1, ddof=1) / np.sqrt(n))
    assert abs((np.abs(t) > crit).mean() - 0.8) < 0.015
    assert minimum_detectable_effect(sd, 1) != minimum_detectable_effect(sd, 1)  # NaN below two seeds
