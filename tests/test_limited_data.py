"""The limited-data family (A3FT's setting): the CLI end to end on its tiny profile, plan-time
errors, which methods run on it, and the parameter shares on the paper architecture."""

from __future__ import annotations

import json
import re

import pytest

from bench.errors import BenchError
from bench.params import count_parameters
from bench.registry import build_method, composed_names, method_names
from bench.runner import check_run
from bench.tasks import load_task
from conftest import bench_cli, result_files, small_task_file


def test_a3ft_runs_end_to_end_with_the_hybrid_loss_and_a_tracked_cfid_curve(isolated_dirs, tmp_path):
    task = small_task_file(tmp_path, "limited-data")
    proc = bench_cli("run", "--task", task, "--method", "a3ft", "--profile", "tiny", "--dataset", "pokemon",
                     "--seeds", "0", check_rc=0, env_extra={"BENCH_PROGRESS_INTERVAL": "0"})
    # stderr is not a terminal here: progress comes as whole lines, no carriage returns or cursor moves
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr
    assert re.search(r"^train a3ft: 100%.*6/6", proc.stderr, re.M)
    [path] = result_files(isolated_dirs / "results")
    r = json.loads(path.read_text())
    assert r["dataset"] == "pokemon" and r["resolved_spec"]["family"] == "limited-data"
    assert r["resolved_spec"]["spec"]["train"]["loss"] == "hybrid"
    assert r["metrics"]["cfid"] > 0 and r["metrics"]["kid"]["subset_size"] == 20
    assert set(r["provenance"]["extractors"]) == {"tiny"}  # the tiny profile scores cFID with the tiny extractor
    assert r["reference"]["split"] == "train" and r["reference"]["n"] == 64  # the whole training set
    assert [s for s, _ in r["tracking"]["curves"]["cfid"]] == [0, 3, 6]
    tiny = load_task("limited-data", "tiny").spec.backbone
    assert r["training"]["trainable_params"] == count_parameters(build_method("a3ft"), tiny).trainable
    gate = r["training"]["method_diagnostics"]["a3ft"]  # Method.diagnostics, keyed by method: A3FT's time-scaling gate over training
    assert gate["gate_forwards"] == 6 and 0 < gate["gate_mean"] < 1 and len(gate["gate_mean_per_block"]) > 0


def test_methods_on_the_family_are_those_whose_groups_and_data_exist():
    supported = sorted(n for n in [*method_names(), *composed_names()] if build_method(n).supports("limited-data"))
    tuners = [n for n in method_names() if n.startswith("peft:")]  # configs on the `attention` group
    assert supported == sorted(["a3ft", "attention-ft", "bitfit", "bnn", "bnn+lora", "bnn-norm", "full-ft", "ip", "lora",
                                *tuners])
    task = load_task("limited-data", "tiny")
    for name in supported:  # each also passes the plan-time checks (weights, groups, extra data)
        check_run(task, build_method(name, family="limited-data"))
    for name in ["difffit", "diff-tuning", "vpt-deep", "adaptformer"]:
        with pytest.raises(BenchError, match=f"method {name!r} does not support task family 'limited-data'"):
            build_method(name, family="limited-data")


def test_a_guided_sampler_is_refused_for_an_unconditional_family(tmp_path):
    task = small_task_file(tmp_path, "limited-data")
    proc = bench_cli("run", "--task", task, "--method", "full-ft", "--profile", "tiny", "--seeds", "0",
                     "--task-set", "sampling.guidance_scale=1.5")
    assert proc.returncode != 0
    assert "unconditional" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_ls_params_shows_the_papers_shares_beside_the_counts():
    proc = bench_cli("ls", "--methods", "--task", "limited-data", "--params", check_rc=0)
    table = proc.stdout.split("trainable parameters, limited-data", 1)[1].splitlines()
    rows = {line.split()[0]: line for line in table if line.startswith("  ")}
    assert "10.373%" in rows["attention-ft"] and rows["attention-ft"].rstrip().endswith("10.3%")
    assert "12.161%" in rows["a3ft"] and "1.8%" in rows["a3ft"]  # adapter 1.79% + attention 10.37%
    assert "difffit" not in rows and "diff-tuning" not in rows
