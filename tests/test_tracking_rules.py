"""Unit tests for bench.tracking_rules on synthetic curves (no torch, no I/O)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pydantic import BaseModel, ValidationError

from bench.tracking_rules import (ArgMax, ArgMin, Dip, FirstAbove, FirstBelow, Rule, detect,
                                  parse_rule, threshold_sensitivity, validate_curve)

NAN = float("nan")


def curve(values, every=10):
    return [(i * every, v) for i, v in enumerate(values)]


# ---------------------------------------------------------------- first_below / first_above

def test_noisy_sudden_convergence_held():
    rng = np.random.default_rng(0)
    steps = np.arange(0, 1000, 20)
    vals = np.where(steps < 600, 0.8, 0.05) + rng.normal(0, 0.02, steps.size)
    vals[10] = 0.1  # one lucky evaluation at step 200 that must not count with hold=3
    c = list(zip(steps.tolist(), vals.tolist()))
    r = FirstBelow(metric="mse", threshold=0.3, hold=3).detect(c)
    assert r["reached"] is True and r["step"] == 600 and r["value"] == pytest.approx(vals[30])
    assert FirstBelow(metric="mse", threshold=0.3).detect(c)["step"] == 200  # hold=1 takes the blip


def test_noisy_rising_first_above():
    rng = np.random.default_rng(1)
    steps = np.arange(0, 500, 10)
    vals = np.clip(steps / 500, 0, 1) + rng.normal(0, 0.01, steps.size)
    r = FirstAbove(metric="clip", threshold=0.5, hold=2).detect(list(zip(steps.tolist(), vals.tolist())))
    assert r["reached"] and 230 <= r["step"] <= 270
    assert r["value"] > 0.5


def test_never_crosses():
    r = FirstBelow(metric="mse", threshold=0.1).detect(curve([0.5, 0.4, 0.3, 0.2]))
    assert r == {"rule": "first_below", "metric": "mse", "reached": False, "step": None, "value": None,
                 "threshold": 0.1, "hold": 1, "reason": "never below 0.1"}
    assert FirstAbove(metric="m", threshold=0.6).detect(curve([0.5, 0.6]))["step"] is None  # strict >
    assert FirstBelow(metric="m", threshold=0.1).detect(curve([0.5, 0.1, 0.05]))["step"] == 20  # strict <


def test_crossing_at_first_point():
    r = FirstBelow(metric="mse", threshold=0.1, hold=2).detect([(5, 0.05), (7, 0.01), (9, 0.5)])
    assert r["reached"] and r["step"] == 5 and r["value"] == 0.05 and r["reason"] is None


def test_crossing_at_last_point():
    c = curve([0.5, 0.4, 0.3, 0.05])
    assert FirstBelow(metric="mse", threshold=0.1, hold=1).detect(c)["step"] == 30
    r = FirstBelow(metric="mse", threshold=0.1, hold=2).detect(c)
    assert r["reached"] is False and r["step"] is None and r["value"] is None
    assert "curve ended after 1 of 2" in r["reason"] and "step 30" in r["reason"]


def test_brief_dip_does_not_hold():
    rule = FirstBelow(metric="mse", threshold=0.1, hold=3)
    r = rule.detect(curve([0.5, 0.05, 0.04, 0.5, 0.5]))
    assert r["step"] is None and not r["reached"] and "never for 3 consecutive" in r["reason"]
    r = rule.detect(curve([0.5, 0.05, 0.04, 0.5, 0.05, 0.04, 0.03, 0.5]))
    assert r["step"] == 40 and r["value"] == 0.05


def test_nan_is_never_a_crossing_and_breaks_hold():
    rule = FirstBelow(metric="mse", threshold=0.1, hold=2)
    assert rule.detect(curve([NAN, NAN, NAN]))["step"] is None
    assert FirstAbove(metric="m", threshold=0.1, hold=1).detect(curve([NAN, 0.0]))["step"] is None
    assert rule.detect(curve([0.05, NAN, 0.04, 0.5]))["step"] is None  # NaN breaks the streak
    assert rule.detect(curve([0.05, NAN, 0.04, 0.03]))["step"] == 20


def test_empty_curve():
    r = FirstBelow(metric="mse", threshold=0.1).detect([])
    assert r["reached"] is False and r["step"] is None and r["reason"] == "empty curve"


# ---------------------------------------------------------------- threshold sensitivity

def test_threshold_sensitivity_first_below_moves_step():
    c = curve([0.95 - 0.1 * i for i in range(10)])  # 0.95, 0.85, ..., 0.05
    rows = threshold_sensitivity(FirstBelow(metric="mse", threshold=0.5), c)
    assert [row["relative_change"] for row in rows] == [-0.2, 0.0, 0.2]
    assert [row["threshold"] for row in rows] == pytest.approx([0.4, 0.5, 0.6])
    assert [row["step"] for row in rows] == [60, 50, 40]  # lower threshold -> crossed later
    assert all(row["reached"] for row in rows)
    far = threshold_sensitivity(FirstBelow(metric="mse", threshold=0.5), c, rel=(-0.99,))
    assert far == [{"relative_change": -0.99, "threshold": pytest.approx(0.005), "step": None,
                    "reached": False}]


def test_threshold_sensitivity_first_above_and_type_check():
    c = curve([0.05 + 0.1 * i for i in range(10)])
    steps = [r["step"] for r in threshold_sensitivity(FirstAbove(metric="m", threshold=0.5, hold=2), c)]
    assert steps == [40, 50, 60]  # higher threshold -> crossed later
    with pytest.raises(TypeError):
        threshold_sensitivity(ArgMin(metric="m"), c)


# ---------------------------------------------------------------- dip

RISE_DIP_RECOVER = [0.5, 0.75, 1.0, 0.5, 0.25, 0.5, 0.875, 1.0]


def test_dip_with_recovery_exact():
    r = Dip(metric="fid_sim", margin=0.125).detect(curve(RISE_DIP_RECOVER))
    assert r == {"rule": "dip", "metric": "fid_sim", "reached": True, "step": 30, "onset": 30,
                 "recovery": 60, "depth": 0.75, "duration": 30, "recovered": True, "peak": 1.0, "margin": 0.125}


def test_dip_without_recovery_exact():
    r = Dip(metric="fid_sim", margin=0.125).detect(curve([0.5, 1.0, 0.75, 0.25, 0.5]))
    assert r["step"] == r["onset"] == 20 and r["reached"]
    assert r["recovery"] is None and r["duration"] is None and r["recovered"] is False
    assert r["depth"] == 0.75


def test_dip_not_reached_within_margin_and_boundary():
    rule = Dip(metric="m", margin=0.25)
    r = rule.detect(curve([0.5, 1.0, 0.75, 0.875, 1.25]))  # drop of exactly margin: not a dip
    assert r["reached"] is False and r["step"] is None and r["onset"] is None and r["depth"] is None
    assert rule.detect(curve([0.5, 1.0, 0.7]))["step"] == 20  # drop just over margin


def test_dip_slow_decline_uses_running_max():
    # each step falls less than the margin, but the fall from the best so far exceeds it at step 20
    r = Dip(metric="m", margin=0.1875).detect(curve([1.0, 0.875, 0.75, 0.625]))
    assert (r["onset"], r["depth"], r["peak"], r["recovered"]) == (20, 0.375, 1.0, False)


def test_dip_nan_is_ignored():
    rule = Dip(metric="m", margin=0.125)
    c = curve([0.5, 1.0, NAN, 0.5, NAN, 0.25, 1.0])
    r = rule.detect(c)
    assert (r["onset"], r["recovery"], r["depth"], r["duration"]) == (30, 60, 0.75, 30)
    assert rule.detect(curve([NAN, 1.0, NAN, 1.0]))["reached"] is False
    assert rule.detect(curve([NAN, 1.0, 0.5]))["onset"] == 20  # a leading NaN is not the best so far


def test_dip_lower_is_better_mirror():
    loss = [1.25 - v for v in RISE_DIP_RECOVER]  # 0.75, 0.5, 0.25, 0.75, 1.0, 0.75, 0.375, 0.25
    r = Dip(metric="loss", margin=0.125, direction="lower_is_better").detect(curve(loss))
    assert (r["onset"], r["recovery"], r["depth"], r["duration"], r["peak"]) == (30, 60, 0.75, 30, 0.25)
    # the same curve read as higher-is-better has a different dip (falls from 0.5 at step 10)
    assert Dip(metric="loss", margin=0.125).detect(curve(loss))["onset"] == 10


def test_dip_noisy_corruption_stage():
    rng = np.random.default_rng(2)
    base = np.concatenate([np.linspace(0.2, 0.8, 10), np.full(10, 0.4), np.linspace(0.5, 0.9, 10)])
    vals = base + rng.normal(0, 0.01, base.size)
    r = Dip(metric="sim", margin=0.1).detect(curve(vals.tolist()))
    assert r["onset"] == 100 and r["recovered"] and 200 < r["recovery"] <= 260
    assert r["depth"] == pytest.approx(0.4, abs=0.06)


# ---------------------------------------------------------------- argmin / argmax

def test_argmin_argmax_ties_and_nan():
    c = curve([3.0, 1.0, NAN, 1.0, 3.0])
    assert ArgMin(metric="m").detect(c) == {"rule": "argmin", "metric": "m", "reached": True,
                                            "step": 10, "value": 1.0, "reason": None}
    r = ArgMax(metric="m").detect(c)
    assert r["step"] == 0 and r["value"] == 3.0
    assert ArgMin(metric="m").detect(curve([NAN, 0.5, -1.0]))["step"] == 20


def test_argmin_not_reached_only_for_empty_or_all_nan():
    for c, why in (([], "empty curve"), (curve([NAN, NAN]), "all values NaN")):
        r = ArgMax(metric="m").detect(c)
        assert r["reached"] is False and r["step"] is None and r["value"] is None and r["reason"] == why
    assert ArgMin(metric="m").detect([(3, 7.0)])["step"] == 3


# ---------------------------------------------------------------- validation, parsing, output shape

def test_pydantic_validation_errors():
    with pytest.raises(ValidationError):
        FirstBelow(metric="mse", threshold=0.1, hold=0)
    with pytest.raises(ValidationError):
        FirstBelow(metric="mse", threshold=0.1, tolerance=3)
    with pytest.raises(ValidationError):
        Dip(metric="m", margin=0.0)
    with pytest.raises(ValidationError):
        FirstAbove(metric="m", threshold=float("nan"))
    with pytest.raises(ValidationError):
        parse_rule({"kind": "first_under", "metric": "mse", "threshold": 0.1})
    with pytest.raises(ValidationError):
        parse_rule({"kind": "argmin", "metric": "mse", "threshold": 0.1})  # extra key
    with pytest.raises(ValidationError):
        FirstBelow(metric="mse", threshold=0.1).hold = 2  # frozen


def test_discriminated_union_parsing():
    rule = parse_rule({"kind": "first_below", "metric": "mse", "threshold": 0.1, "hold": 3})
    assert isinstance(rule, FirstBelow) and rule.hold == 3 and rule.threshold == 0.1

    class TaskSpec(BaseModel):  # how a task spec embeds rules
        rules: list[Rule]

    spec = TaskSpec.model_validate({"rules": [
        {"kind": "first_above", "metric": "clip", "threshold": 0.3},
        {"kind": "dip", "metric": "sim", "margin": 0.05, "direction": "lower_is_better"},
        {"kind": "argmin", "metric": "loss"}, {"kind": "argmax", "metric": "sim"}]})
    assert [type(r) for r in spec.rules] == [FirstAbove, Dip, ArgMin, ArgMax]
    assert spec.rules[1].direction == "lower_is_better"
    assert TaskSpec.model_validate_json(spec.model_dump_json()) == spec


def test_curve_validation():
    with pytest.raises(ValueError, match="strictly increasing.*step 10 at index 2 follows step 20"):
        ArgMin(metric="m").detect([(0, 1.0), (20, 1.0), (10, 1.0)])
    with pytest.raises(ValueError, match="strictly increasing"):
        validate_curve([(0, 1.0), (0, 2.0)])
    with pytest.raises(ValueError, match="integer"):
        validate_curve([(0.5, 1.0)])
    with pytest.raises(ValueError, match="pair"):
        validate_curve([(0, 1.0, 2.0)])
    with pytest.raises(ValueError, match="numeric"):
        validate_curve([("5", 1.0)])
    with pytest.raises(ValueError, match="numeric"):
        validate_curve([(5, None)])
    assert validate_curve(np.array([[0, 1], [5, 2]])) == [(0, 1.0), (5, 2.0)]


def test_every_result_is_json_with_common_keys():
    c = curve(RISE_DIP_RECOVER + [NAN])
    rules = [FirstBelow(metric="a", threshold=0.3, hold=2), FirstAbove(metric="a", threshold=2.0),
             Dip(metric="a", margin=0.1), Dip(metric="a", margin=5.0), ArgMin(metric="a"),
             ArgMax(metric="a")]
    for rule in rules:
        r = detect(rule, c)
        assert r == rule.detect(c) and r["rule"] == rule.kind and r["metric"] == "a"
        assert (r["step"] is None) == (not r["reached"])
        assert r["step"] is None or isinstance(r["step"], int)
        assert json.loads(json.dumps(r, allow_nan=False)) == r
    assert not math.isnan(detect(ArgMax(metric="a"), c)["value"])
