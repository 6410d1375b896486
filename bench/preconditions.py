"""Preconditions: the regime a paper's mechanism needs, declared in the task file, measured on the
results, and checked before any verdict (issue 29, "out of regime").

A task file lists them at its top level (`preconditions:`, outside the profiles, so declaring or
editing one never changes a run's identity). Each names the runs it reads (`method`, sweep values
in `where`), what it measures (`kind`) and which verdicts it gates (`verdicts`, default all of its
section). Kinds:

* ``curve_turns``: the tracked metric turns the wrong way after its best (overfitting,
  memorisation): on each dataset's seed-averaged curve, the largest rise above the running best
  that holds for `hold` evaluations exceeds the null-calibrated dip margin at the curve's length
  (committed calibration noise sd / sqrt(seeds); bench/calibration.py).
* ``curve_plateau``: the last `last` evaluations of the seed-averaged curve agree within noise:
  their range is below the 95% quantile of the range of `last` iid noise values at the averaged sd.
* ``final_at_least`` / ``final_at_most``: the seed mean of a final metric against a declared level.
  `metric` may instead be a dotted path in the result file (a method's recorded diagnostics), and
  `relative_to` another: the value per run is then |metric / relative_to| (e.g. the loss change
  that sampling a Bayesian layer's weights makes, as a share of the loss).
* ``distinct_at_least``: at least `value` distinct values of a result field (e.g. source models).
* ``analysis_at_least`` / ``analysis_at_most``: a value of a `bench analyze` result (`analysis`,
  e.g. bank-quality; `metric`, a key of its `values`, or a dotted path in the file), averaged over
  its files per dataset, against a declared level. `method`, if set, picks the analysis files of
  that method; `where` does not apply.

A precondition that cannot be measured (no runs, no tracked curve, no committed calibration) is
"not measured", and gates its verdicts like a failed one: a verdict may only claim to test the
paper where the regime was shown to hold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Literal

import numpy as np

from bench.spec import Precondition
from bench.tracking import measurement_only

Status = Literal["passed", "failed", "not measured"]
PLATEAU_QUANTILE = 0.95
_SIMS = 20_000
_SIM_SEED = 29


@dataclass(frozen=True)
class Outcome:
    pre: Precondition
    status: Status
    measured: str  # the measured value(s) against the rule, in words

    @property
    def holds(self) -> bool:
        return self.status == "passed"

    def gates(self, method: str | None) -> bool:
        """Whether this outcome puts `method`'s verdict out of regime."""
        return not self.holds and (self.pre.verdicts is None or method is None or method in self.pre.verdicts)

    def line(self) -> str:
        return f"- `{self.pre.id}`: {self.pre.claim}. **{self.status}**: {self.measured}"


# -- which runs ----------------------------------------------------------------------------------

def _scalar(v) -> float | None:
    if v is None:
        return None
    v = v.get("mean") if isinstance(v, dict) else v
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _metric(data, name: str) -> float | None:
    v = getattr(data.metrics, name, None)
    return _scalar(v.model_dump() if hasattr(v, "model_dump") else v)


def _final_value(data, pre: Precondition) -> float | None:
    """What a final_* precondition reads of one run: a metric, or a dotted path in the result file,
    as |metric / relative_to| where `relative_to` is declared."""
    v = _metric(data, pre.metric) if "." not in pre.metric else _scalar(_field(data, pre.metric))
    if v is None or pre.relative_to is None:
        return v
    base = _scalar(_field(data, pre.relative_to))
    return abs(v / base) if base else None


def _matches(data, pre: Precondition) -> bool:
    if pre.method is not None and data.method != pre.method:
        return False
    sweep = dict(data.sweep or {})
    for key, want in pre.where.items():
        wants = want if isinstance(want, list) else [want]
        if key not in sweep or not any(str(sweep[key]) == str(w) or _scalar(sweep[key]) == _scalar(w) for w in wants):
            return False
    # Tracking settings (--track K) change what is measured, not the model: a tracked run is the
    # task as written (a curve precondition reads exactly those runs).
    trained = [k for k in (data.task_overrides or {}) if not measurement_only(k)]
    if not pre.where and (data.sweep or trained):
        return False  # no `where`: the task as written
    if set(sweep) - set(pre.where):
        return False  # swept on another key too (a sensitivity sweep): not the runs it reads
    return True


def _by_dataset(runs) -> dict[str, list]:
    out: dict[str, list] = {}
    for r in runs:
        out.setdefault(r.dataset, []).append(r)
    return dict(sorted(out.items()))


def _field(data, dotted: str):
    cur: Any = data.model_dump() if hasattr(data, "model_dump") else data
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _strip_none(v):
    if isinstance(v, dict):
        return {k: _strip_none(x) for k, x in v.items() if x is not None}
    return [_strip_none(x) for x in v] if isinstance(v, list) else v


def _who(pre: Precondition) -> str:
    where = ", ".join(f"{k}={v}" for k, v in pre.where.items())
    return f"{pre.method or 'every method'}{f' ({where})' if where else ''}"


# -- the null for curves --------------------------------------------------------------------------

@lru_cache(maxsize=64)
def plateau_quantile(k: int) -> float:
    """The 95% quantile of the range of k iid standard normal values (by simulation, fixed seed)."""
    z = np.random.default_rng(_SIM_SEED).standard_normal((_SIMS, k))
    return float(np.quantile(z.max(axis=1) - z.min(axis=1), PLATEAU_QUANTILE, method="higher"))


def _mean_curve(runs, metric: str) -> tuple[list[int], np.ndarray, int] | None:
    """The seed-averaged curve of `metric` over the runs that share the first run's step grid."""
    curves = []
    for r in runs:
        tr = r.tracking
        pts = (tr.curves.get(metric) if tr is not None else None) or []
        if pts:
            curves.append(([int(s) for s, _ in pts], [float(v) for _, v in pts]))
    if not curves:
        return None
    steps = curves[0][0]
    same = [v for s, v in curves if s == steps]
    return steps, np.mean(np.array(same), axis=0), len(same)


def _noise(task: str, version: int, profile: str, dataset: str, metric: str) -> float | None:
    from bench.calibration import load_calibration, noise_sd

    cal = load_calibration(task, version, profile)
    return None if cal is None else noise_sd(cal, dataset, metric)


def _curve_check(pre: Precondition, task: str, version: int, profile: str, ds: str, runs) -> tuple[Status, str]:
    from bench.calibration import HOLD, calibrated_value, dip_critical, load_calibration

    got = _mean_curve(runs, pre.metric)
    if got is None:
        return "not measured", f"{ds}: no tracked {pre.metric} curve"
    steps, curve, n = got
    sd = _noise(task, version, profile, ds, pre.metric)
    if sd is None:
        return "not measured", f"{ds}: no committed calibration of {pre.metric}'s noise"
    sd_mean = sd / np.sqrt(n)
    if pre.kind == "curve_turns":
        z = (-curve if pre.lower_is_better else curve)[None, :]
        if len(steps) <= HOLD:
            return "not measured", f"{ds}: {len(steps)} evaluations, too few for a held turn"
        rise = float(dip_critical(z, HOLD)[0])
        margin = calibrated_value(load_calibration(task, version, profile), "dip", len(steps)) * sd_mean
        ok = rise > margin
        return ("passed" if ok else "failed"), (f"{ds}: largest rise after the best, held {HOLD} evaluations, "
                                                f"{rise:.3g} against the null margin {margin:.3g} "
                                                f"({n} seeds, {len(steps)} evaluations to step {steps[-1]})")
    k = min(pre.last, len(steps))
    tail = curve[-k:]
    spread = float(tail.max() - tail.min())
    limit = plateau_quantile(k) * sd_mean
    ok = k >= 2 and spread <= limit
    return ("passed" if ok else "failed"), (f"{ds}: range of the last {k} evaluations (steps {steps[-k]}-{steps[-1]}) "
                                            f"{spread:.3g} against the noise range {limit:.3g} ({n} seeds)")


# -- checking ------------------------------------------------------------------------------------

def declared(task: str, version: int, profile: str) -> list[Precondition]:
    """The preconditions the task file declares for this version and profile (none for a task
    version that is no longer the file's: its preconditions are not known)."""
    from bench.tasks import available_tasks, read_task_file

    path = available_tasks().get(task)
    if path is None:
        return []
    tf = read_task_file(path)
    if tf.version != version:
        return []
    return [p for p in tf.preconditions if p.profiles is None or profile in p.profiles]


def _analysis_value(data, metric: str) -> float | None:
    """`values[metric]` of an analysis file, else the dotted path `metric` in it."""
    for path in (["values", *metric.split(".")], metric.split(".")):
        cur = data
        for part in path:
            cur = cur.get(part) if isinstance(cur, dict) else getattr(cur, part, None)
        if cur is not None:
            return _scalar(cur)
    return None


def _check_analysis(pre: Precondition, analyses: Iterable) -> Outcome:
    picked = [a for a in analyses if a.analysis == pre.analysis and (pre.method is None or a.method == pre.method)]
    rule = f"needs {'at least' if pre.kind == 'analysis_at_least' else 'at most'} {pre.value:g}"
    if not picked:
        return Outcome(pre, "not measured", f"no `bench analyze {pre.analysis}` results ({rule})")
    per, verdicts = [], []
    for ds, group in _by_dataset(picked).items():
        vals = [v for v in (_analysis_value(a, pre.metric) for a in group) if v is not None]
        if not vals:
            verdicts.append("not measured")
            per.append(f"{ds}: no {pre.metric}")
            continue
        mean = float(np.mean(vals))
        ok = mean >= pre.value if pre.kind == "analysis_at_least" else mean <= pre.value
        verdicts.append("passed" if ok else "failed")
        per.append(f"{ds}: {pre.metric} {mean:.4g} ({len(vals)} file{'s' if len(vals) > 1 else ''})")
    if pre.datasets == "any":
        status = "passed" if "passed" in verdicts else ("failed" if "failed" in verdicts else "not measured")
    else:
        status = "passed" if all(v == "passed" for v in verdicts) else (
            "failed" if "failed" in verdicts else "not measured")
    return Outcome(pre, status, f"`{pre.analysis}`, {rule}: " + "; ".join(per))


def check_one(pre: Precondition, task: str, version: int, profile: str, runs: Iterable,
              analyses: Iterable = ()) -> Outcome:
    if pre.kind in ("analysis_at_least", "analysis_at_most"):
        return _check_analysis(pre, analyses)
    picked = [r for r in runs if _matches(r, pre)]
    who = _who(pre)
    if not picked:
        return Outcome(pre, "not measured", f"no results of {who}")
    if pre.kind == "distinct_at_least":
        # Unset keys are left out: result files written before a field existed omit it, later ones
        # record null, and the two describe the same thing.
        values = {json.dumps(_strip_none(_field(r, pre.field)), sort_keys=True, default=str) for r in picked}
        n = len(values)
        return Outcome(pre, "passed" if n >= pre.value else "failed",
                       f"{n} distinct `{pre.field}` among {len(picked)} runs of {who} (needs at least {pre.value:g})")
    per, verdicts = [], []
    for ds, group in _by_dataset(picked).items():
        if pre.kind in ("final_at_least", "final_at_most"):
            vals = [v for v in (_final_value(r, pre) for r in group) if v is not None]
            if not vals:
                status, text = "not measured", f"{ds}: no {pre.metric}"
            else:
                mean = float(np.mean(vals))
                ok = mean >= pre.value if pre.kind == "final_at_least" else mean <= pre.value
                status = "passed" if ok else "failed"
                what = pre.metric if pre.relative_to is None else \
                    f"|{pre.metric.rsplit('.', 1)[-1]} / {pre.relative_to.rsplit('.', 1)[-1]}|"
                text = f"{ds}: {what} {mean:.4g} ({len(vals)} runs)"
        else:
            status, text = _curve_check(pre, task, version, profile, ds, group)
        per.append(text)
        verdicts.append(status)
    if "not measured" in verdicts and "passed" not in verdicts and "failed" not in verdicts:
        status = "not measured"
    elif pre.datasets == "any":
        status = "passed" if "passed" in verdicts else ("failed" if "failed" in verdicts else "not measured")
    else:
        status = "passed" if all(v == "passed" for v in verdicts) else (
            "failed" if "failed" in verdicts else "not measured")
    rule = {"final_at_least": f"needs at least {pre.value}", "final_at_most": f"needs at most {pre.value}",
            "curve_turns": "needs a turn beyond noise", "curve_plateau": "needs a plateau within noise"}[pre.kind]
    where = "every dataset" if pre.datasets == "all" else "any dataset"
    return Outcome(pre, status, f"{who}, {rule} on {where}: " + "; ".join(per))


def check(task: str, version: int, profile: str, runs: Iterable, analyses: Iterable = ()) -> list[Outcome]:
    """Every declared precondition of the section, measured on its runs (`data` of Loaded results:
    the task as written and its sweep points) and its `bench analyze` results (`analyses`; a caller
    that passes none leaves the analysis kinds not measured)."""
    pres = declared(task, version, profile)
    if not pres:
        return []
    runs = [getattr(r, "data", r) for r in runs]
    runs = [r for r in runs if r.task == task and r.task_version == version and r.profile == profile
            and not r.is_smoke]
    analyses = [getattr(a, "data", a) for a in analyses]
    analyses = [a for a in analyses if a.task == task and a.task_version == version and a.profile == profile]
    return [check_one(p, task, version, profile, runs, analyses) for p in pres]


def out_of_regime(outcomes: list[Outcome], method: str | None = None) -> str | None:
    """The words for `classify(out_of_regime=...)`: the preconditions that gate `method`'s verdict
    and do not hold, or None when every one holds."""
    bad = [o for o in outcomes if o.gates(method)]
    if not bad:
        return None
    return "; ".join(f"precondition `{o.pre.id}` {o.status}" for o in bad) + " (Preconditions, above)"


def markdown(outcomes: list[Outcome], task: str) -> list[str]:
    if not outcomes:
        return []
    return [f"Preconditions of the mechanism (declared in `tasks/{task}.yaml`, measured on these results; a verdict "
            "they gate is \"out of regime\" unless they hold):", "", *(o.line() for o in outcomes), ""]
