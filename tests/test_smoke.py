"""`bench run --smoke`: a first run in seconds on the tiny profile (issue 36), keyed apart from
real runs and left out of every report."""

from __future__ import annotations

import json
import os
from pathlib import Path

from bench.report.load import load_results
from conftest import bench_cli

SMOKE = ["run", "--task", "dit-transfer", "--method", "full-ft", "--profile", "tiny", "--dataset", "food101",
         "--seeds", "0", "--smoke"]


def test_smoke_run_is_fast_keyed_apart_and_in_no_report():
    bench_cli(*SMOKE, check_rc=0, timeout=300)
    results = Path(os.environ["BENCH_RESULTS"])
    files = list(results.rglob("seed0.json"))
    assert len(files) == 1
    path = files[0]
    assert path.parents[1].name.startswith("smoke=True~")  # its own folder, never a real run's
    result = json.loads(path.read_text())
    assert result["task_overrides"]["smoke"] is True
    assert result["task_overrides"]["sampling.num_samples"] == 32  # evaluation shrunk, and recorded
    assert result["samples"]["n"] == 32
    assert result["budget"]["steps"] == 2 and result["budget_override"] is True
    assert result["training"]["steps"] == 2
    rs = load_results(results, tasks={"dit-transfer": (result["task_version"], ["paper", "tiny"])},
                      check_stale=False)
    assert not rs.problems  # its path agrees with what it records
    assert [r.path for r in rs.smoke] == [path] and not rs.runs and not rs.variants
    from bench.report.build import left_out_notes

    assert left_out_notes(rs, []) == ["left out 1 smoke run(s) (bench run --smoke: a setup check, not a measurement)"]
    # Planned again, the smoke run is current: a second --smoke run skips it.
    again = bench_cli(*SMOKE, check_rc=0, timeout=300)
    assert "skip" in again.stdout


def test_smoke_keeps_what_the_user_set():
    from bench.runner import smoke
    from bench.tasks import load_task

    task = load_task("dit-transfer", "tiny").with_overrides({"smoke": True, "sampling.num_samples": 300})
    shrunk, steps = smoke(task, 5)
    assert steps == 5  # --steps wins over the smoke budget
    assert shrunk.spec.sampling.num_samples == 300
    assert shrunk.spec.evaluation.ewc_samples == 16
    assert smoke(load_task("dit-transfer", "tiny"), None) == (load_task("dit-transfer", "tiny"), None)
