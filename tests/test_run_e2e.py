"""`bench run` end to end on the tiny profile, in a subprocess: real DiT, real files."""

import json
import math

from conftest import bench_cli, result_files, small_task_file


def test_run_writes_one_complete_result_per_run_and_skips_it_next_time(isolated_dirs, tmp_path):
    task = small_task_file(tmp_path)
    args = ["run", "--task", task, "--method", "diff-tuning", "--profile", "tiny", "--dataset", "food101,artbench10",
            "--seeds", "0"]
    first = bench_cli(*args, check_rc=0)
    files = result_files(isolated_dirs / "results")
    assert len(files) == 2, first.stdout
    # Deterministic layout: task@version / profile / method / config hash / dataset / seed.
    rel = files[0].relative_to(isolated_dirs / "results").parts
    assert rel[0] == "dit-transfer@v2" and rel[1] == "tiny" and rel[2] == "diff-tuning"
    assert len(rel[3]) == 12 and rel[4] in {"food101", "artbench10"} and rel[5] == "seed0.json"

    result = json.loads(files[0].read_text())
    assert result["metrics"]["fid"] > 0 and math.isfinite(result["metrics"]["kid"]["mean"])
    assert result["metrics"]["kid"]["subset_size"] == 20 and result["metrics"]["kid"]["subsets"] == 5
    assert 1 <= result["metrics"]["is"]["mean"] and 0 <= result["metrics"]["prc"]["precision"] <= 1
    assert result["metrics"]["sfid"] > 0 and result["metrics"]["ewc"]["n_params"] == result["training"]["total_params"]
    assert result["training"]["steps"] == 6 and result["training"]["trainable_params"] == result["training"]["total_params"]
    assert result["training"]["trainable_fraction"] == 1.0
    prov = result["provenance"]
    for key in ("commit", "dirty", "packages", "device", "backbone_sha256", "train_data_sha256", "wall_time_s",
                "peak_memory_mb", "final_state_sha256", "knowledge_bank"):
        assert key in prov, key
    assert prov["packages"]["torch"] and prov["knowledge_bank"]["n"] == 16
    assert result["resolved_spec"]["spec"]["train"]["steps"] == 6
    assert not list((isolated_dirs / "results").rglob("*.tmp"))

    mtimes = [f.stat().st_mtime_ns for f in files]
    second = bench_cli(*args, check_rc=0)
    assert second.stdout.count("skip") == 2
    assert [f.stat().st_mtime_ns for f in files] == mtimes

    food = next(f for f in files if f.parts[-2] == "food101")
    before = json.loads(food.read_text())
    forced = bench_cli("run", "--task", task, "--method", "diff-tuning", "--profile", "tiny", "--dataset", "food101",
                       "--seeds", "0", "--force", check_rc=0)
    assert "wrote" in forced.stdout and food.stat().st_mtime_ns != mtimes[files.index(food)]
    # Same seed, same code: the forced rerun reproduces the numbers and the weights exactly.
    again = json.loads(food.read_text())
    assert again["metrics"] == before["metrics"]
    assert again["provenance"]["final_state_sha256"] == before["provenance"]["final_state_sha256"]


def test_steps_override_is_keyed_apart_and_recorded(isolated_dirs, tmp_path):
    task = small_task_file(tmp_path)
    bench_cli("run", "--task", task, "--method", "full-ft", "--profile", "tiny", "--dataset", "cub200", "--seeds", "1",
              "--steps", "3", check_rc=0)
    (path,) = result_files(isolated_dirs / "results")
    result = json.loads(path.read_text())
    assert result["budget_override"] is True and result["budget"]["steps"] == 3 and result["training"]["steps"] == 3
    # full-ft trains on no bank images and never builds the bank; its EWC Fisher comes from a
    # separate fixed set of pre-trained samples, recorded by hash
    assert result["provenance"]["knowledge_bank"] is None
    ewc = result["metrics"]["ewc"]
    assert ewc["total"] > 0 and ewc["fisher_data"].startswith("pre-trained model samples")
    assert len(ewc["fisher_data_sha256"]) == 64


def test_submitit_local_executor_runs_the_grid_as_jobs(isolated_dirs, tmp_path):
    """The same runs fanned out through submitit (here its local executor: one subprocess per job;
    on a cluster, --cluster slurm makes it a job array)."""
    task = small_task_file(tmp_path)
    proc = bench_cli("run", "--task", task, "--method", "full-ft", "--profile", "tiny", "--dataset", "df20m",
                     "--seeds", "0,1", "--steps", "2", "--executor", "submitit", "--cluster", "local", check_rc=0)
    assert "submitted 2 job(s)" in proc.stdout
    files = result_files(isolated_dirs / "results")
    assert sorted(f.name for f in files) == ["seed0.json", "seed1.json"]
    logs = list((isolated_dirs / "cache" / "submitit").rglob("*_log.out"))
    assert len(logs) == 2 and any("wrote" in p.read_text() for p in logs)
    # Named by the real job ids (those it printed), never a literal `%j` folder.
    assert not [p for p in (isolated_dirs / "cache" / "submitit").rglob("*") if "%" in p.name]
    assert all(p.name.split("_")[0] in proc.stdout for p in logs)


def test_a_run_records_the_commit_it_started_from(tmp_path, monkeypatch):
    """The tree can move on while a run trains (a queue of runs in a worktree that is checked out
    anew): the result names the commit its code came from, read when the run starts."""
    from bench import provenance
    from bench.planning import plan_run
    from bench.registry import build_method
    from bench.runner import execute
    from bench.tasks import load_task

    from bench import runner

    monkeypatch.setenv("BENCH_RESULTS", str(tmp_path / "results"))
    tree = {"commit": "at-start", "dirty": False}
    monkeypatch.setattr(provenance, "git_state", lambda: dict(tree))
    real_train = runner.train

    def train_then_move_the_tree(*args, **kw):
        out = real_train(*args, **kw)
        tree.update(commit="moved-on", dirty=True)
        return out

    monkeypatch.setattr(runner, "train", train_then_move_the_tree)
    task = load_task(str(small_task_file(tmp_path)), "tiny")
    method = build_method("full-ft", {}, family=task.file.family)
    result = json.loads(execute(plan_run(task, method, "food101", 0, steps=2), method,
                                log=lambda m: None).read_text())
    assert (result["provenance"]["commit"], result["provenance"]["dirty"]) == ("at-start", False)


def test_interrupting_the_parent_cancels_its_jobs():
    """Ctrl-C or SIGTERM while waiting for submitit jobs cancels those still running (submitit's
    workers ignore SIGTERM, so they would otherwise outlive the parent)."""
    import os
    import signal

    import pytest

    from bench.executors import cancelled_on_interrupt

    class Job:
        def __init__(self, job_id, done):
            self.job_id, self._done, self.cancelled = job_id, done, False

        def done(self):
            return self._done

        def cancel(self, check=True):
            self.cancelled = True

    jobs, lines = [Job("1", True), Job("2", False), Job("3", False)], []
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with cancelled_on_interrupt(jobs, lines.append):
            os.kill(os.getpid(), signal.SIGTERM)
    assert [j.cancelled for j in jobs] == [False, True, True]
    assert lines == ["interrupted: cancelled 2 running job(s) of 3"]
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is ours only while waiting


def test_sigterm_ends_an_inline_run_as_an_interrupt():
    """`kill` of an inline `bench run` unwinds like Ctrl-C (temporary files removed, the resume hint)."""
    import os
    import signal

    import pytest

    from bench.executors import sigterm_interrupts

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with sigterm_interrupts():
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before
