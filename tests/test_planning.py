"""A run's identity is resolved once, at planning (bench/planning.py), and read back from result
files through the same code: what a planned run records hashes back to its identity, a recorded
run planned again lands on the same key, and every committed result sits where planning puts it."""

import json
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.planning import plan_run, replan, stored_identity
from bench.registry import build_method
from bench.runner import plan
from bench.tasks import load_task
from conftest import ROOT

DATA = {"train": "a" * 64, "reference": "b" * 64}


def as_stored(run) -> dict:
    """The identity part of the result file `run` would write, read back as JSON."""
    fields = {**run.record(), "provenance": {"train_data_sha256": run.data["train"]},
              "reference": {"sha256": run.data["reference"]}}
    return json.loads(json.dumps(fields, sort_keys=True))


def test_a_planned_run_is_read_back_from_what_it_records(isolated_dirs):
    task = load_task("dit-transfer", "tiny")
    points, _, _ = plan(task, "lora+diff-tuning", {"lora.rank": "8"}, ["cub200"], [0, 1], 5,
                        sweep={"diff-tuning.tau": [0.5, 2]}, task_sets={"sampling.steps": 3})
    runs = [r for p in points for r in p.runs]
    assert len(runs) == 4 and len({r.path for r in runs}) == 4
    run = runs[1]
    assert (run.dataset, run.seed, run.steps, run.budget["steps"]) == ("cub200", 1, 5, 5)
    assert run.method_overrides == {"lora.rank": "8", "diff-tuning.tau": "0.5"}
    assert run.path == (isolated_dirs / "results" / task.key / "tiny" / "lora+diff-tuning" / run.config_dir
                        / "cub200" / "seed1.json")
    assert run.config_dir == f"diff-tuning.tau=0.5,sampling.steps=3~{run.config_hash}"

    with pytest.raises(BenchError, match="known only once its data is loaded"):
        run.record()
    done = run.with_data(DATA)
    assert run.identity is None and done.identity is not None  # the record itself never changes
    stored = as_stored(done)
    assert stored_identity(stored) == done.identity
    again = replan(stored, run.task).with_data(DATA)
    assert (again.path, again.config_hash, again.identity) == (run.path, run.config_hash, done.identity)
    assert again.build_method().config_dict() == run.method_config  # rebuilt from the whole recorded config

    # the method that runs must be the planned one: another config would be filed under this key
    run.check_method(run.build_method())
    with pytest.raises(BenchError, match="is not the one planned"):
        run.check_method(build_method("lora+diff-tuning", {"lora.rank": "4"}, family="class-transfer"))


def test_a_result_is_current_until_its_recorded_spec_changes(isolated_dirs):
    task = load_task("dit-transfer", "tiny")
    run = plan_run(task, build_method("full-ft", family="class-transfer"), "food101", 0).with_data(DATA)
    assert not run.is_current() and run.not_current() == "missing"  # no file yet
    run.path.parent.mkdir(parents=True)
    stored = as_stored(run)
    run.path.write_text(json.dumps(stored)[:40])  # cut short: not "stale", which means complete
    assert run.not_current() == "truncated or unreadable"
    run.path.write_text(json.dumps(stored))
    assert run.is_current()
    stored["method_config"]["lr"] = 1.0
    run.path.write_text(json.dumps(stored))
    assert not run.is_current() and run.not_current() == "stale"


def test_every_committed_result_is_filed_where_planning_puts_it(monkeypatch, tmp_path):
    """Each committed run, planned again on its task file as it resolves now, has the config hash
    and the result path it was written under."""
    monkeypatch.setenv("BENCH_RESULTS", str(tmp_path))
    root, tasks, n = ROOT / "results", {}, 0
    for path in sorted(root.rglob("seed*.json")):
        rel = path.relative_to(root)
        if rel.parts[2] == "analysis":
            continue
        raw = json.loads(path.read_text())
        key = (raw["task"], raw["profile"], json.dumps(raw.get("task_overrides") or {}, sort_keys=True))
        if key not in tasks:
            tasks[key] = load_task(raw["task"], raw["profile"]).with_overrides(raw.get("task_overrides") or {})
        run = replan(raw, tasks[key])
        assert (run.config_hash, run.path.relative_to(tmp_path)) == (raw["config_hash"], rel), path
        n += 1
    assert n > 100
