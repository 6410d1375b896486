"""Detection rules applied to a metric curve recorded over training.

A curve is a sequence of ``(step, value)`` pairs with strictly increasing integer steps; values are
floats and may be NaN. NaN is never below, above, or within anything, so it never fires a rule
(and it breaks a ``hold`` streak). Every ``detect`` returns a JSON-able dict with ``rule``,
``metric``, ``reached`` and ``step`` (None exactly when not reached; never a made-up number).

Why each rule exists:

* ``first_below`` / ``first_above`` with ``hold=k``: ControlNet's "sudden convergence" -- the step
  at which a metric (e.g. condition-alignment error) drops past a threshold and stays there for k
  evaluations, so one lucky evaluation does not count. ``threshold_sensitivity`` reruns the rule
  at nearby thresholds to show whether the conclusion depends on the chosen threshold.
* ``dip``: few-shot fine-tuning's "corruption stage" -- fidelity rises, falls well below its best
  so far, then (maybe) recovers; the rule reports onset, recovery, depth and duration.
* ``argmin`` / ``argmax``: plain convergence curves -- where the best value was reached.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Annotated, Any, Literal, Sequence, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Curve = Sequence[tuple[int, float]]


def validate_curve(curve: Curve) -> list[tuple[int, float]]:
    """Return the curve as ``[(int step, float value)]``; ValueError unless steps strictly increase."""
    out: list[tuple[int, float]] = []
    for i, point in enumerate(curve):
        if len(point) != 2 or not all(isinstance(x, Real) and not isinstance(x, bool) for x in point):
            raise ValueError(f"curve point {i} must be a numeric (step, value) pair, got {point!r}")
        step, value = point
        if not float(step).is_integer():
            raise ValueError(f"curve point {i}: step must be an integer, got {step!r}")
        if out and int(step) <= out[-1][0]:
            raise ValueError(f"curve steps must be strictly increasing: step {step} at index {i} "
                             f"follows step {out[-1][0]}")
        out.append((int(step), float(value)))
    return out


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    metric: str = Field(min_length=1, description="which tracked metric the rule reads")

    def _out(self, step: int | None, **fields: Any) -> dict:
        return {"rule": self.kind, "metric": self.metric, "reached": step is not None, "step": step,
                **fields}


class _Threshold(_Rule):
    threshold: float = Field(allow_inf_nan=False)
    hold: int = Field(default=1, ge=1, description="consecutive evaluations the crossing must last")

    def _hit(self, v: float) -> bool:  # NaN compares False either way
        return v < self.threshold if self.kind == "first_below" else v > self.threshold

    def detect(self, curve: Curve) -> dict:
        pts = validate_curve(curve)
        word = "below" if self.kind == "first_below" else "above"
        start, run, crossed = 0, 0, False
        for i, (_, v) in enumerate(pts):
            if not self._hit(v):
                run = 0
                continue
            start, run, crossed = (i if run == 0 else start), run + 1, True
            if run >= self.hold:
                s, val = pts[start]
                return self._out(s, value=val, threshold=self.threshold, hold=self.hold, reason=None)
        if not pts:
            reason = "empty curve"
        elif run:
            reason = (f"curve ended after {run} of {self.hold} consecutive evaluations {word} "
                      f"{self.threshold} (from step {pts[start][0]})")
        elif crossed:
            reason = f"{word} {self.threshold} but never for {self.hold} consecutive evaluations"
        else:
            reason = f"never {word} {self.threshold}"
        return self._out(None, value=None, threshold=self.threshold, hold=self.hold, reason=reason)


class FirstBelow(_Threshold):
    kind: Literal["first_below"] = "first_below"


class FirstAbove(_Threshold):
    kind: Literal["first_above"] = "first_above"


class Dip(_Rule):
    """Onset: value falls more than ``margin`` short of the best so far (running max for
    higher_is_better, running min for lower_is_better). Recovery: first later value back within
    ``margin`` of that best. Depth: best at onset minus the worst value from onset to recovery."""

    kind: Literal["dip"] = "dip"
    margin: float = Field(gt=0, allow_inf_nan=False, description="absolute, in metric units")
    direction: Literal["higher_is_better", "lower_is_better"] = "higher_is_better"

    def detect(self, curve: Curve) -> dict:
        pts = validate_curve(curve)
        sgn = 1.0 if self.direction == "higher_is_better" else -1.0  # work in higher-is-better units
        best, onset = -math.inf, None
        for i, (_, v) in enumerate(pts):
            x = sgn * v
            if best - x > self.margin:  # False for NaN and before the first value
                onset = i
                break
            if not math.isnan(x):
                best = max(best, x)
        if onset is None:
            return self._out(None, onset=None, recovery=None, depth=None, duration=None,
                             recovered=False, peak=None, margin=self.margin)
        low, recovery = sgn * pts[onset][1], None
        for s, v in pts[onset + 1:]:
            x = sgn * v
            if math.isnan(x):
                continue
            if best - x <= self.margin:
                recovery = s
                break
            low = min(low, x)
        on = pts[onset][0]
        return self._out(on, onset=on, recovery=recovery, depth=best - low,
                         duration=None if recovery is None else recovery - on,
                         recovered=recovery is not None, peak=sgn * best, margin=self.margin)


class _Extremum(_Rule):
    def detect(self, curve: Curve) -> dict:
        pts = validate_curve(curve)
        sgn = 1.0 if self.kind == "argmax" else -1.0
        best = None
        for s, v in pts:
            if not math.isnan(v) and (best is None or sgn * v > sgn * best[1]):  # strict: first on ties
                best = (s, v)
        if best is None:
            return self._out(None, value=None, reason="empty curve" if not pts else "all values NaN")
        return self._out(best[0], value=best[1], reason=None)


class ArgMin(_Extremum):
    kind: Literal["argmin"] = "argmin"


class ArgMax(_Extremum):
    kind: Literal["argmax"] = "argmax"


Rule = Annotated[Union[FirstBelow, FirstAbove, Dip, ArgMin, ArgMax], Field(discriminator="kind")]
_RULE_ADAPTER: TypeAdapter = TypeAdapter(Rule)


def parse_rule(data: Any) -> Rule:
    """Build a rule from a dict such as ``{"kind": "first_below", "metric": "mse", ...}``."""
    return _RULE_ADAPTER.validate_python(data)


def detect(rule: Rule, curve: Curve) -> dict:
    return rule.detect(curve)


def threshold_sensitivity(rule: FirstBelow | FirstAbove, curve: Curve,
                          rel: Sequence[float] = (-0.2, 0.0, 0.2)) -> list[dict]:
    """Rerun a threshold rule at ``threshold * (1 + r)`` for each r in ``rel``."""
    if not isinstance(rule, _Threshold):
        raise TypeError(f"threshold_sensitivity needs a first_below/first_above rule, got {rule!r}")
    pts, rows = validate_curve(curve), []
    for r in rel:
        res = rule.model_copy(update={"threshold": rule.threshold * (1.0 + r)}).detect(pts)
        rows.append({"relative_change": r, **{k: res[k] for k in ("threshold", "step", "reached")}})
    return rows


def dip_with_hold(curve: Curve, metric: str, margin: float, hold: int = 2,
                  direction: str = "higher_is_better") -> dict:
    """The dip rule with onset and recovery each held for `hold` consecutive evaluations (a single
    low or high point is not a stage): onset is the first i whose values i..i+hold-1 all fall more
    than `margin` short of the best before i; recovery the first later j whose values j..j+hold-1
    are all back within `margin` of that best. The calibrated form of `Dip` (bench/calibration.py);
    the same output fields, plus `hold`."""
    pts = validate_curve(curve)
    sgn = 1.0 if direction == "higher_is_better" else -1.0
    x = [sgn * v for _, v in pts]
    out = {"rule": "dip", "metric": metric, "margin": margin, "hold": hold}
    best, onset = -math.inf, None
    for i in range(len(x)):
        window = x[i:i + hold]
        if len(window) == hold and all(best - w > margin for w in window):  # NaN never fires
            onset = i
            break
        if not math.isnan(x[i]):
            best = max(best, x[i])
    if onset is None:
        return {**out, "reached": False, "step": None, "onset": None, "recovery": None, "depth": None,
                "duration": None, "recovered": False, "peak": None}
    recovery, low = None, x[onset]
    for j in range(onset + 1, len(x)):
        window = x[j:j + hold]
        if len(window) == hold and all(best - w <= margin for w in window):
            recovery = j
            break
        if not math.isnan(x[j]):
            low = min(low, x[j])
    on = pts[onset][0]
    rec = None if recovery is None else pts[recovery][0]
    return {**out, "reached": True, "step": on, "onset": on, "recovery": rec, "depth": best - low,
            "duration": None if rec is None else rec - on, "recovered": rec is not None, "peak": sgn * best}
