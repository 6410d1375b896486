"""Preconditions of the mechanism (issue 29, "out of regime"): declared in the task file, measured
on results, checked before the verdicts they gate; a rule on curves must not pass on noise."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from conftest import ROOT, bench_cli

from bench import calibration as C
from bench import preconditions as P
from bench.spec import Precondition
from bench.verdicts import classify, kind_of_line

SD = 2.0  # the noise of one evaluation in the fake calibration below


def run(method="full-ft", dataset="d", seed=0, curve=None, metric="cfid", sweep=None, **metrics):
    tracking = SimpleNamespace(curves={metric: curve}) if curve is not None else None
    return SimpleNamespace(task="t", task_version=1, profile="tiny", method=method, dataset=dataset, seed=seed,
                           sweep=sweep or {}, task_overrides={}, is_smoke=False, tracking=tracking,
                           metrics=SimpleNamespace(**metrics), resolved_spec={"spec": {"backbone": {"w": seed}}},
                           model_dump=lambda: {"resolved_spec": {"spec": {"backbone": {"w": seed}}}})


@pytest.fixture
def calibrated(monkeypatch):
    cal = {"noise": {"d": {"pretrained": {"cfid": {"sd": SD}}}}, "rules": C.rules_block()}
    monkeypatch.setattr(C, "load_calibration", lambda *a: cal)
    return cal


def pre(**kw) -> Precondition:
    return Precondition(**{"id": "p", "claim": "c", "method": "full-ft", "metric": "cfid", **kw})


def steps(values):
    return [[150 * i, float(v)] for i, v in enumerate(values)]


def test_a_curve_that_turns_up_beyond_noise_passes_and_one_that_keeps_falling_fails(calibrated):
    turns = [run(seed=s, curve=steps([90, 30, 25, 40, 45, 47])) for s in range(3)]
    falls = [run(seed=s, curve=steps([90, 40, 32, 28, 26, 25])) for s in range(3)]
    p = pre(kind="curve_turns")
    assert P.check_one(p, "t", 1, "tiny", turns).status == "passed"
    out = P.check_one(p, "t", 1, "tiny", falls)
    assert out.status == "failed" and "null margin" in out.measured


def test_curve_turns_passes_on_at_most_five_percent_of_noise_curves(calibrated):
    """The null: flat curves of pure evaluation noise at the calibrated sd must not show
    'overfitting' more often than the rule's false-positive rate (plus simulation error)."""
    rng = np.random.default_rng(4321)
    p, sims, passed = pre(kind="curve_turns"), 400, 0
    for _ in range(sims):
        runs = [run(seed=s, curve=steps(30 + SD * rng.standard_normal(6))) for s in range(3)]
        passed += P.check_one(p, "t", 1, "tiny", runs).status == "passed"
    rate = passed / sims
    assert rate <= C.FPR + 3 * np.sqrt(C.FPR * (1 - C.FPR) / sims), rate


def test_curve_plateau_passes_on_at_least_ninety_five_percent_of_flat_noise_curves(calibrated):
    """The plateau rule's null the other way round: a curve that has truly plateaued (its tail flat,
    only evaluation noise at the calibrated sd, seed-averaged) must pass at the rule's level, so a
    'budget too short' verdict is never produced by noise alone more often than 5%."""
    rng = np.random.default_rng(8765)
    p, sims, failed = pre(kind="curve_plateau", last=3), 400, 0
    for _ in range(sims):
        runs = [run(seed=s, curve=steps([90, 60, *(30 + SD * rng.standard_normal(4))])) for s in range(3)]
        failed += P.check_one(p, "t", 1, "tiny", runs).status == "failed"
    rate, level = failed / sims, 1 - P.PLATEAU_QUANTILE
    assert rate <= level + 3 * np.sqrt(level * (1 - level) / sims), rate


def test_plateau_within_noise_passes_and_a_falling_tail_fails(calibrated):
    flat = [run(seed=s, curve=steps([90, 40, 30.5, 30.0, 30.4])) for s in range(3)]
    falling = [run(seed=s, curve=steps([90, 60, 45, 35, 25])) for s in range(3)]
    p = pre(kind="curve_plateau", last=3)
    assert P.check_one(p, "t", 1, "tiny", flat).status == "passed"
    assert P.check_one(p, "t", 1, "tiny", falling).status == "failed"


def test_no_calibration_no_runs_or_no_curve_is_not_measured(monkeypatch):
    monkeypatch.setattr(C, "load_calibration", lambda *a: None)
    p = pre(kind="curve_turns")
    assert P.check_one(p, "t", 1, "tiny", [run(curve=steps([3, 2, 1]))]).status == "not measured"
    assert P.check_one(p, "t", 1, "tiny", []).status == "not measured"
    assert P.check_one(p, "t", 1, "tiny", [run(curve=None)]).status == "not measured"


def test_final_level_and_distinct_count_and_sweep_selection():
    runs = [run(method="clean", sweep={"params.eta": 0}, seed=s, mem_ratio=0.0) for s in range(3)]
    runs += [run(method="clean", sweep={"params.eta": 5}, seed=s, mem_ratio=0.5) for s in range(3)]
    mem = pre(kind="final_at_least", method="clean", metric="mem_ratio", value=0.01, where={"params.eta": 0})
    assert P.check_one(mem, "t", 1, "tiny", runs).status == "failed"
    assert P.check_one(mem.model_copy(update={"where": {"params.eta": 5}}), "t", 1, "tiny", runs).status == "passed"
    sources = pre(kind="distinct_at_least", method="clean", metric=None, field="resolved_spec.spec.backbone", value=3)
    assert P.check_one(sources.model_copy(update={"where": {"params.eta": 0}}), "t", 1, "tiny", runs).status == "passed"
    two = [r for r in runs if r.seed < 2 and r.sweep["params.eta"] == 0]
    assert P.check_one(sources.model_copy(update={"where": {"params.eta": 0}}), "t", 1, "tiny", two).status == "failed"


def test_a_tracked_run_is_the_task_as_written_and_another_override_is_not():
    tracked = SimpleNamespace(**{**vars(run(seed=0, cfid=1.0)), "task_overrides": {"tracking.every_steps": 75}})
    changed = SimpleNamespace(**{**vars(run(seed=1, cfid=1.0)), "task_overrides": {"train.steps": 50}})
    p = pre(kind="final_at_least", value=0.5)
    assert P._matches(tracked, p) and not P._matches(changed, p)


def test_a_recorded_diagnostic_relative_to_another_over_a_list_of_sweep_values():
    """final_* on a dotted path of the result file, as |metric / relative_to| (few-shot's BNN: the
    loss change sampled weights make, as a share of the loss), over every N of a sweep; a run swept
    on another key as well (a sensitivity sweep) is not one of the runs it reads."""
    def bnn(n, seed, change, extra=None):
        r = run(method="bnn", sweep={"params.num_images": n, **(extra or {})}, seed=seed)
        diag = {"training": {"method_diagnostics": {"bnn": {"loss_change": change, "loss_mean_weights": 0.2}}}}
        return SimpleNamespace(**{**vars(r), "model_dump": lambda: diag})

    runs = [bnn(n, s, -0.0004) for n in (1, 2, 6) for s in range(3)]  # 0.2% of the loss
    strong = [bnn(1, s, 0.01, {"bnn.sigma_init": 1.0}) for s in range(3)]  # 5%, but a sweep of its own
    p = pre(kind="final_at_least", method="bnn", metric="training.method_diagnostics.bnn.loss_change",
            relative_to="training.method_diagnostics.bnn.loss_mean_weights", value=0.01,
            where={"params.num_images": [1, 2, 6]})
    out = P.check_one(p, "t", 1, "tiny", runs + strong)
    assert out.status == "failed" and "|loss_change / loss_mean_weights| 0.002 (9 runs)" in out.measured
    assert P.check_one(p.model_copy(update={"value": 0.001}), "t", 1, "tiny", runs + strong).status == "passed"
    only_one = P.check_one(p.model_copy(update={"where": {"params.num_images": 2}}), "t", 1, "tiny", runs)
    assert "(3 runs)" in only_one.measured


def test_a_failed_precondition_makes_the_verdicts_it_gates_out_of_regime():
    failed = P.Outcome(pre(kind="curve_turns", verdicts=["a3ft"]), "failed", "x")
    assert P.out_of_regime([failed], "lora") is None  # not gated
    words = P.out_of_regime([failed], "a3ft")
    v = classify(-1.0, -0.5, paper_effect=0.4, out_of_regime=words)
    assert kind_of_line(str(v)) == "out-of-regime" and "`p` failed" in str(v)
    assert P.out_of_regime([P.Outcome(pre(kind="curve_turns"), "passed", "x")], "a3ft") is None


@pytest.mark.parametrize("bad, words", [
    ("  - {id: p, claim: c, kind: final_at_least, metric: fid}\n", "needs value"),
    ("  - {id: p, claim: c, kind: curve_turns, metric: fid, profiles: [nope]}\n", "unknown profile"),
    ("  - {id: p, claim: c, kind: curve_turns, metric: fid}\n  - {id: p, claim: c, kind: curve_turns, metric: fid}\n",
     "declared twice"),
    ("  - {id: p, claim: c, kind: sometimes, metric: fid}\n", "kind"),
])
def test_a_malformed_precondition_is_one_line_at_validation(tmp_path, bad, words):
    text = (ROOT / "tasks" / "limited-data.yaml").read_text().split("\npreconditions:")[0]
    path = tmp_path / "limited-data.yaml"
    path.write_text(text + "\npreconditions:\n" + bad)
    r = bench_cli("validate", str(path))
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and words in err[0], r.stderr


@pytest.mark.parametrize("task", ["limited-data", "corruption-sweep", "dit-transfer", "fewshot-corruption"])
def test_the_committed_leaderboard_shows_each_declared_precondition_with_its_measured_value(task):
    from bench.tasks import available_tasks, read_task_file

    declared = [p for p in read_task_file(available_tasks()[task]).preconditions if "tiny" in (p.profiles or ["tiny"])]
    assert declared, f"{task} declares no tiny precondition"
    board = (ROOT / "LEADERBOARD.md").read_text()
    for p in declared:
        line = next((ln for ln in board.splitlines() if f"`{p.id}`: {p.claim}" in ln), None)
        assert line is not None, f"LEADERBOARD.md does not show precondition {p.id}"
        status = next(s for s in ("passed", "failed", "not measured") if f"**{s}**" in line)
        if status != "passed":  # every verdict it gates says so
            gated = [ln for ln in board.splitlines() if f"precondition `{p.id}` {status}" in ln]
            assert gated and all(kind_of_line(ln) == "out-of-regime" for ln in gated)


def analysis(name="bank-quality", dataset="source", **values):
    return SimpleNamespace(task="t", task_version=1, profile="tiny", analysis=name, method="diff-tuning",
                           dataset=dataset, values=values)


def test_an_analysis_value_passes_fails_or_is_not_measured():
    at_most = Precondition(id="bank", claim="c", kind="analysis_at_most", analysis="bank-quality", metric="fid_ratio",
                           value=1.5, verdicts=["diff-tuning"])
    good, bad = [analysis(fid_ratio=1.2, fid_gap=0.4)], [analysis(fid_ratio=2.0, fid_gap=3.0)]
    assert P.check_one(at_most, "t", 1, "tiny", [], good).status == "passed"
    o = P.check_one(at_most, "t", 1, "tiny", [], bad)
    assert o.status == "failed" and "fid_ratio 2" in o.measured and P.out_of_regime([o], "diff-tuning")
    assert P.out_of_regime([o], "lora") is None
    # the mean over the analysis's files; another analysis, or none, is not measured
    assert P.check_one(at_most, "t", 1, "tiny", [], good + bad).status == "failed"  # mean 1.6
    assert P.check_one(at_most, "t", 1, "tiny", [], [analysis("eps-mse", fid_ratio=1.0)]).status == "not measured"
    assert P.check_one(at_most, "t", 1, "tiny", [run()], []).status == "not measured"
    assert P.check_one(at_most.model_copy(update={"metric": "nope"}), "t", 1, "tiny", [], good).status == "not measured"
    at_least = at_most.model_copy(update={"kind": "analysis_at_least", "metric": "fid_gap", "value": 1.0})
    assert P.check_one(at_least, "t", 1, "tiny", [], bad).status == "passed"
    assert P.check_one(at_least, "t", 1, "tiny", [], good).status == "failed"


def test_check_reads_the_sections_analyses(monkeypatch):
    at_most = Precondition(id="bank", claim="c", kind="analysis_at_most", analysis="bank-quality", metric="fid_ratio",
                           value=1.5)
    monkeypatch.setattr(P, "declared", lambda *a: [at_most])
    other = SimpleNamespace(**{**vars(analysis(fid_ratio=9.0)), "profile": "paper"})
    assert [o.status for o in P.check("t", 1, "tiny", [], [analysis(fid_ratio=1.0), other])] == ["passed"]
    assert [o.status for o in P.check("t", 1, "tiny", [])] == ["not measured"]


def test_an_analysis_precondition_needs_its_analysis_metric_and_value():
    with pytest.raises(ValueError, match="needs analysis"):
        Precondition(id="p", claim="c", kind="analysis_at_most", metric="fid_ratio", value=1.5)
