"""Evaluation noise measured and event rules calibrated against it (issue 29): the committed
calibration files, the null-calibrated rules the reports re-apply, and the threshold-free curve
statistics beside them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import ROOT, bench_cli

from bench import calibration as C
from bench.curve_stats import auc_mean, isotonic, shape, time_to_half
from bench.families.controlnet import report as cn
from bench.families.few_shot import report as fs
from bench.stats import bootstrap_interval, probability_of_improvement
from bench.tracking_rules import FirstBelow, dip_with_hold

# The tasks whose families declare event rules on tracked curves; each must have its calibration.
EVENT_TASKS = {"controlnet-convergence": ("controlnet", "mse", "first_below"),
               "fewshot-corruption": ("few-shot", "dino", "dip")}
TEST_SIMS, TEST_SEED = 4000, 12345  # not the calibration's own simulation seed


def version(task: str) -> int:
    """The task's current version: calibrations and results are read for it, never a stale one."""
    from bench.tasks import load_task

    return load_task(task, "tiny").file.version


def committed(task: str) -> dict:
    path = C.calibration_path(task, version(task), "tiny")
    assert path.exists(), f"no committed calibration for {task}: run `bench calibrate --task {task} --profile tiny`"
    return json.loads(path.read_text())


def curve_lengths(task: str, metric: str) -> set[int]:
    out = set()
    for f in (ROOT / "results").glob(f"{task}@v{version(task)}/tiny/**/seed*.json"):
        c = (json.loads(f.read_text()).get("tracking") or {}).get("curves", {}).get(metric)
        if c:
            out.add(len(c))
    return out


@pytest.mark.parametrize("task", sorted(EVENT_TASKS))
def test_committed_calibration_is_measured_not_guessed(task):
    cal = committed(task)
    assert cal["k"] >= C.MIN_K and cal["run_seed"] == C.CALIBRATION_RUN_SEED
    assert cal["command"].startswith("bench calibrate") and cal["evaluation_set"]
    reported_seeds = set(range(10_000, 10_100)) | set(range(20_000, 20_100))  # SAMPLING/TRACKING_SEED + seed
    assert not set(cal["sampling_seeds"]) & reported_seeds and len(set(cal["sampling_seeds"])) == cal["k"]
    _, metric, _ = EVENT_TASKS[task]
    for dataset, noise in cal["noise"].items():
        pre = noise["pretrained"][metric]
        assert len(pre["values"]) == cal["k"]
        assert pre["sd"] == pytest.approx(float(np.std(pre["values"], ddof=1)))
        assert pre["sd"] > 0
    assert "finetuned" in cal["noise"][cal["finetuned"]["dataset"]]


@pytest.mark.parametrize("task", sorted(EVENT_TASKS))
def test_stored_rule_quantiles_come_from_the_null_simulation(task):
    cal = committed(task)
    for kind in ("dip", "first_below"):
        block = cal["rules"][kind]
        assert block["hold"] >= 2 and block["fpr"] <= 0.05
        for length in (5, 11, 13):
            assert block["quantile_sd"][str(length)] == pytest.approx(C.null_quantile(kind, length, block["hold"]))


def _fires(kind: str, values: np.ndarray, rule: dict) -> bool:
    curve = [(i, float(v)) for i, v in enumerate(values)]
    if kind == "dip":
        return dip_with_hold(curve, "m", rule["margin"], rule["hold"])["reached"]
    threshold = curve[0][1] - rule["offset"]
    return FirstBelow(metric="m", threshold=threshold, hold=rule["hold"]).detect(curve)["reached"]


@pytest.mark.parametrize("task", sorted(EVENT_TASKS))
def test_every_event_rule_fires_on_at_most_5_percent_of_pure_noise_curves(task):
    """Pure-noise curves (flat, iid Gaussian) at the task's committed calibrated sd, of every
    length the committed results have, through the exact rule the report re-applies: the
    false-positive rate is at most 5% within simulation error (3 standard errors)."""
    cal = committed(task)
    _, metric, kind = EVENT_TASKS[task]
    rng = np.random.default_rng(TEST_SEED)
    limit = 0.05 + 3 * math.sqrt(0.05 * 0.95 / TEST_SIMS)
    lengths = curve_lengths(task, metric)
    assert lengths
    for dataset in cal["noise"]:
        for length in sorted(lengths):
            rule = (C.dip_rule if kind == "dip" else C.below_rule)(cal, dataset, metric, length)
            sd = C.noise_sd(cal, dataset, metric)
            level = cal["noise"][dataset]["pretrained"][metric]["mean"]
            curves = level + sd * rng.standard_normal((TEST_SIMS, length))
            fpr = np.mean([_fires(kind, c, rule) for c in curves])
            assert fpr <= limit, (dataset, length, fpr)
            # and the uncalibrated (hold 1, half the margin) rule would fire far more: the test has power
            loose = {**rule, "hold": 1, **({"margin": rule["margin"] / 2} if kind == "dip" else
                                          {"offset": rule["offset"] / 2})}
            assert np.mean([_fires(kind, c, loose) for c in curves[:1000]]) > 2 * limit


def test_reports_take_the_margin_from_the_committed_calibration(monkeypatch):
    """The re-detected events carry exactly the margin / offset the committed file gives, and
    follow the file when it changes (no number set anywhere else)."""
    from bench.report.load import load_results

    rs = load_results(ROOT / "results")
    for mod, task, metric, key in ((fs, "fewshot-corruption", "dino", "margin"),
                                   (cn, "controlnet-convergence", "mse", "offset")):
        section = (task, version(task), "tiny")
        g0 = mod.runs_by([r for r in rs.runs + rs.variants if r.section == section])
        assert g0, section  # the committed results of the current version are there to re-detect
        cal = committed(task)

        def events(calib):
            monkeypatch.setattr(C, "load_calibration", lambda *a, **k: calib)
            g, got = mod.calibrate(g0, section)
            assert got is calib
            return [(k2, raw) for by in g.values() for runs in by.values() for k2, raw in runs.items()]

        for k2, raw in events(cal)[:12]:
            e = (mod.stage(raw) if mod is fs else cn._event(raw))
            dataset = k2[0] if mod is fs else raw["dataset"]
            length = len(raw["tracking"]["curves"][metric])
            want = (C.dip_rule if mod is fs else C.below_rule)(cal, dataset, metric, length)[key]
            assert e["calibrated"] and e[key] == pytest.approx(want)
        doubled = json.loads(json.dumps(cal))
        for noise in doubled["noise"].values():
            for which in noise.values():
                which[metric]["sd"] *= 2
        for k2, raw in events(doubled)[:4]:
            e = (mod.stage(raw) if mod is fs else cn._event(raw))
            dataset = k2[0] if mod is fs else raw["dataset"]
            length = len(raw["tracking"]["curves"][metric])
            assert e[key] == pytest.approx(2 * (C.dip_rule if mod is fs else C.below_rule)(cal, dataset, metric,
                                                                                            length)[key])


def test_calibrate_refuses_fewer_than_8_evaluations_before_any_work(tmp_path):
    bad = bench_cli("calibrate", "--task", "controlnet-convergence", "--profile", "tiny", "--method", "controlnet",
                    "--k", "3")
    assert bad.returncode == 2 and "at least 8" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_dip_with_hold_needs_two_low_points_to_start_and_two_to_recover():
    one_low = [(i, v) for i, v in enumerate([0.5, 0.6, 0.6, 0.4, 0.6, 0.6])]
    assert not dip_with_hold(one_low, "d", 0.1, 2)["reached"]
    assert dip_with_hold(one_low, "d", 0.1, 1)["reached"]
    two = [(i, v) for i, v in enumerate([0.5, 0.6, 0.4, 0.4, 0.6, 0.45, 0.6, 0.6])]
    e = dip_with_hold(two, "d", 0.1, 2)
    assert e["onset"] == 2 and e["recovery"] == 6 and e["depth"] == pytest.approx(0.2)


def test_threshold_free_statistics_and_shape():
    t = np.arange(0, 325, 25)
    step = [(int(x), float(0.03 - 0.01 / (1 + math.exp(-(x - 175) / 8)))) for x in t]
    smooth = [(int(x), float(0.02 + 0.01 * math.exp(-x / 60))) for x in t]
    assert shape(step)["sudden"] and not shape(smooth)["sudden"]
    assert time_to_half(step) == 175 and time_to_half(smooth) in (25, 50)
    assert auc_mean([(0, 1.0), (10, 3.0)]) == pytest.approx(2.0)
    assert list(isotonic(np.array([3.0, 1.0, 2.0, 0.0]), increasing=False)) == [3.0, 1.5, 1.5, 0.0]


def test_bootstrap_and_probability_of_improvement():
    lo, hi = bootstrap_interval([0.1, 0.2, 0.3, 0.4], 0.95)
    assert 0.1 <= lo < hi <= 0.4
    assert probability_of_improvement([0.1, -0.1, 0.0, 0.2], better=1) == pytest.approx(0.625)


def test_every_committed_calibration_file_is_complete():
    """Whatever tasks have a committed calibration: measured K >= 8 times per checkpoint, on seeds
    disjoint from the reported ones, every tracked metric, with the command that made it."""
    files = sorted((ROOT / "calibration").glob("*@v*/*.json"))
    assert {f.parent.name.split("@")[0] for f in files} >= set(EVENT_TASKS)
    for f in files:
        cal = json.loads(f.read_text())
        assert cal["schema"] == C.SCHEMA and f == C.calibration_path(cal["task"], cal["version"], cal["profile"])
        assert cal["k"] >= C.MIN_K and min(cal["sampling_seeds"]) >= C.CALIBRATION_SAMPLING_SEED
        assert cal["command"].startswith("bench calibrate")
        for noise in cal["noise"].values():
            for which in noise.values():
                assert set(which) == set(cal["metrics"])
                assert all(len(m["values"]) == cal["k"] for m in which.values())


def tracked_tasks() -> list[str]:
    from bench.tasks import available_tasks, load_task

    return sorted(name for name in available_tasks() if load_task(name, "tiny").spec.tracking is not None)


def test_every_task_with_tracking_has_a_committed_calibration_of_every_dataset_and_metric():
    """Issue 29: noise measured, not guessed, for every tracked task -- each of its tiny datasets and
    tracked metrics has a measured sd from K >= 8 evaluations with calibration seeds."""
    from bench.families import family_class
    from bench.tasks import load_task

    tasks = tracked_tasks()
    assert {"controlnet-convergence", "fewshot-corruption", "limited-data", "corruption-sweep",
            "corruption-controlnet"} <= set(tasks)
    for name in tasks:
        task = load_task(name, "tiny")
        cal = C.load_calibration(name, task.file.version, "tiny")
        assert cal is not None, f"no committed calibration for {name}: run `bench calibrate --task {name}`"
        assert cal["k"] >= C.MIN_K and cal["command"].startswith("bench calibrate") and cal["evaluation_set"]
        assert cal["run_seed"] not in task.spec.seeds
        metrics = task.spec.tracking.metrics or list(family_class(task.file.family).default_tracked)
        for ds in task.spec.datasets:
            for m in metrics:
                sd = C.noise_sd(cal, ds, m)
                assert sd is not None and sd > 0, f"{name}/{ds}: no measured noise of {m}"
