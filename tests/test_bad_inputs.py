"""Bad input, as a table (issue 36): every case runs the real `bench` CLI in a subprocess and must
give exactly one `error:` line on stderr, the expected exit code, and change nothing: no file under
the test's folders (results, cache, the arguments' own files) and none of the committed reports or
results (LEADERBOARD.md, reports/, results/). The data-loss cases follow the table: report commands
on another results folder leave the committed reports alone, stale-table removal deletes only what
it wrote, a changed checkpoint is refused on resume, and two results folders sharing one cache keep
their own checkpoints."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, Interrupt, bench_cli, crash_after

TINY = ["--task", "dit-transfer", "--method", "full-ft", "--profile", "tiny"]
RUN = ["run", *TINY, "--dataset", "food101", "--seeds", "0"]
TASK_TEXT = (ROOT / "tasks" / "dit-transfer.yaml").read_text()


# -- what must not change -----------------------------------------------------------------------

def _tree(root: Path, content: bool = False) -> dict[str, tuple]:
    """Every path under `root` with its size and mtime (and sha256 where `content`)."""
    out = {}
    if root.is_file():
        paths = [root]
    elif root.exists():
        paths = [root, *root.rglob("*")]
    else:
        return out
    for p in paths:
        st = p.lstat()
        key = str(p.relative_to(root.parent))
        if p.is_dir():
            out[key] = ("dir",)
        else:
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if content else None
            out[key] = (st.st_size, st.st_mtime_ns, digest)
    return out


def _committed() -> dict[str, tuple]:
    return {**_tree(ROOT / "LEADERBOARD.md", content=True), **_tree(ROOT / "reports", content=True),
            **_tree(ROOT / "results")}


@pytest.fixture(scope="module")
def committed():
    return _committed()


def _assert_committed_unchanged(before: dict) -> None:
    after = _committed()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"committed files changed: {changed[:10]}"


def _one_error_line(proc, *needles) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- inputs the table's cases use -------------------------------------------------------------

def _task_variant(tmp: Path, old: str, new: str, count: int = 1) -> Path:
    assert old in TASK_TEXT, old
    path = tmp / "variant.yaml"
    path.write_text(TASK_TEXT.replace(old, new, count))
    return path


def _with_line_after(tmp: Path, anchor: str, extra: str) -> Path:
    """The task file with `extra` inserted after the line that starts with `anchor`."""
    lines = TASK_TEXT.splitlines(keepends=True)
    i = next(i for i, line in enumerate(lines) if line.startswith(anchor))
    path = tmp / "variant.yaml"
    path.write_text("".join(lines[: i + 1] + [extra] + lines[i + 1:]))
    return path


TINY_FOOD = "      food101:"


def _boom_family(tmp: Path) -> dict:
    """A task whose family module raises a plain Python exception on import: a bug, not bad input."""
    (tmp / "boom_family.py").write_text("raise ZeroDivisionError('division by zero in the family module')\n")
    return {"PYTHONPATH": f"{tmp}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _a_file(tmp: Path) -> Path:
    (tmp / "a-file").write_text("not a folder\n")
    return tmp / "a-file"


def _empty_dir(tmp: Path) -> Path:
    (tmp / "empty").mkdir()
    return tmp / "empty"


def _json(tmp: Path, text: str, name: str = "thing.json") -> Path:
    (tmp / name).write_text(text)
    return tmp / name


# Each case: (argv built from the test's tmp folder, extra environment, exit code, needles).
CASES = {
    # --- were tracebacks -------------------------------------------------------------------------
    "seed-overflow": (lambda t: [*RUN[:-1], "99999999999999999999"], None, 2, ["--seeds", "0 to 2^63-1"]),
    "seed-2^63": (lambda t: [*RUN[:-1], str(2**63)], None, 2, ["0 to 2^63-1"]),
    "device-tpu": (lambda t: [*RUN, "--device", "tpu"], None, 2, ["unknown device 'tpu'", "cuda:N"]),
    "device-cuda-missing": (lambda t: [*RUN, "--device", "cuda:7"], None, 2, ["--device cuda:7"]),
    "results-dir-is-a-file": (lambda t: [*RUN, "--results-dir", _a_file(t)], None, 2, ["is not a folder"]),
    "results-dir-under-a-file": (lambda t: [*RUN, "--results-dir", _a_file(t) / "sub"], None, 2, ["is not a folder"]),
    "bug-is-one-line": (lambda t: ["run", "--task", _task_variant(t, "family: class-transfer", "family: boom_family:Boom"),
                                   "--method", "full-ft", "--profile", "tiny", "--dataset", "food101", "--seeds", "0"],
                        _boom_family, 1, ["unexpected ZeroDivisionError", "BENCH_DEBUG=1"]),
    # --- were silently accepted ------------------------------------------------------------------
    "seed-negative": (lambda t: [*RUN[:-1], "-1"], None, 2, ["0 to 2^63-1, got -1"]),
    "seeds-empty": (lambda t: [*RUN[:-1], ""], None, 2, ["--seeds", "empty value"]),
    "seeds-empty-element": (lambda t: [*RUN[:-1], "0,,1"], None, 2, ["--seeds", "empty element"]),
    "dataset-empty": (lambda t: ["run", *TINY, "--dataset", "", "--seeds", "0"], None, 2, ["--dataset", "empty value"]),
    "dataset-trailing-comma": (lambda t: ["run", *TINY, "--dataset", "food101,", "--seeds", "0"], None, 2,
                               ["--dataset", "empty element"]),
    "sweep-empty-element": (lambda t: ["run", "--task", "dit-transfer", "--method", "diff-tuning", "--profile", "tiny",
                                       "--sweep", "tau=0,,1"], None, 2, ["--sweep", "empty element"]),
    "sweep-no-values": (lambda t: ["run", "--task", "dit-transfer", "--method", "diff-tuning", "--profile", "tiny",
                                   "--sweep", "tau="], None, 2, ["--sweep", "KEY=V1,V2"]),
    "set-and-sweep-same-key": (lambda t: ["run", "--task", "dit-transfer", "--method", "diff-tuning", "--profile", "tiny",
                                          "--set", "tau=0.5", "--sweep", "tau=0,1"], None, 2,
                               ["--set tau", "--sweep tau", "same setting"]),
    "set-and-sweep-composed-key": (lambda t: ["run", "--task", "dit-transfer", "--method", "lora+diff-tuning",
                                              "--profile", "tiny", "--set", "diff-tuning.tau=0.5", "--sweep", "tau=0,1"],
                                   None, 2, ["same setting"]),
    "task-set-and-sweep-same-path": (lambda t: ["run", *TINY, "--task-set", "params.eta=5", "--sweep", "eta=0,1"],
                                     None, 2, ["--task-set params.eta", "--sweep eta"]),
    "cluster-slurm-without-sbatch": (lambda t: [*RUN, "--executor", "submitit", "--cluster", "slurm"],
                                     lambda t: {"PATH": str(Path(sys.executable).parent)}, 2,
                                     ["--cluster slurm", "no `sbatch` on PATH", "--cluster local"]),
    "results-dir-empty": (lambda t: [*RUN, "--results-dir", ""], None, 2, ["--results-dir", "empty value"]),
    "task-name-escapes": (lambda t: ["run", "--task", _task_variant(t, "name: dit-transfer", "name: ../../evil"),
                                     *TINY[2:], "--dataset", "food101", "--seeds", "0"], None, 2,
                          ["name", "'../../evil' is not a valid name"]),
    "task-name-slash": (lambda t: ["validate", _task_variant(t, "name: dit-transfer", "name: a/b")], None, 2,
                        ["'a/b' is not a valid name"]),
    "task-duplicate-name": (lambda t: ["run", "--task", _with_line_after(t, "name: dit-transfer", "name: other\n"),
                                       *TINY[2:]], None, 2, ["malformed YAML", "duplicate key 'name'"]),
    "task-duplicate-dataset": (lambda t: ["validate", _with_line_after(
        t, TINY_FOOD, "      food101: {num_classes: 3, hub: null, synthetic: {generator: plates, num_train: 6, "
                      "num_eval: 6}}\n")], None, 2, ["duplicate key 'food101'"]),
    "task-dataset-key-escapes": (lambda t: ["validate", _with_line_after(
        t, TINY_FOOD, "      ../x: {title: x, num_classes: 3, synthetic: {generator: plates, num_train: 6, "
                      "num_eval: 6}}\n")], None, 2, ["datasets", "'../x' is not a valid name"]),
    "task-version-true": (lambda t: ["validate", _task_variant(t, "version: 2", "version: true")], None, 2,
                          ["version", "integer"]),
    "task-version-string": (lambda t: ["validate", _task_variant(t, "version: 2", 'version: "2"')], None, 2,
                            ["version", "integer"]),
    "task-seed-negative": (lambda t: ["validate", _task_variant(t, "seeds: [0, 1, 2]", "seeds: [0, -1]")], None, 2,
                           ["seeds", "greater than or equal to 0"]),
    "tasks-path-missing": (lambda t: ["ls", "--tasks"], lambda t: {"BENCH_TASKS_PATH": str(t / "nonexistent")}, 2,
                           ["BENCH_TASKS_PATH", "does not exist"]),
    "tasks-path-missing-run": (lambda t: RUN, lambda t: {"BENCH_TASKS_PATH": str(t / "nonexistent")}, 2,
                               ["BENCH_TASKS_PATH"]),
    "verify-empty-folder": (lambda t: ["verify", _empty_dir(t)], None, 2, ["no result files under"]),
    "verify-not-a-result": (lambda t: ["verify", _json(t, '{"hello": 1}\n')], None, 2,
                            ["is not a run result file", "'run_identity'"]),
    "verify-not-json": (lambda t: ["verify", _json(t, "{not json")], None, 2, ["is not a run result file", "not JSON"]),
    "verify-missing": (lambda t: ["verify", t / "nowhere.json"], None, 2, ["no such result file"]),
    "leaderboard-missing-results": (lambda t: ["leaderboard", "--results-dir", t / "out" / "all"], None, 2,
                                    ["no results folder"]),
    "leaderboard-results-alias-missing": (lambda t: ["leaderboard", "--results", t / "out" / "all"], None, 2,
                                          ["no results folder"]),
    "leaderboard-results-is-a-file": (lambda t: ["leaderboard", "--results-dir", _a_file(t)], None, 2,
                                      ["is not a folder"]),
    "figures-missing-results": (lambda t: ["figures", "--results-dir", t / "nowhere"], None, 2, ["no results folder"]),
    "export-missing-results": (lambda t: ["export", "--results-dir", t / "nowhere"], None, 2, ["no results folder"]),
    "analyze-results-is-a-file": (lambda t: ["analyze", "chain-of-forgetting", *TINY, "--results-dir", _a_file(t)],
                                  None, 2, ["is not a folder"]),
    "analyze-seed-negative": (lambda t: ["analyze", "chain-of-forgetting", *TINY, "--seeds", "-3"], None, 2,
                              ["0 to 2^63-1"]),
    # --- already clean before issue 36 (kept so that they stay so) --------------------------------
    "unknown-task": (lambda t: ["run", "--task", "dit-transfr", *TINY[2:]], None, 2, ["did you mean 'dit-transfer'"]),
    "unknown-method": (lambda t: ["run", "--task", "dit-transfer", "--method", "ful-ft", "--profile", "tiny"], None, 2,
                       ["did you mean 'full-ft'"]),
    "unknown-profile": (lambda t: ["run", *TINY[:4], "--profile", "tiyn"], None, 2, ["did you mean 'tiny'"]),
    "unknown-dataset": (lambda t: ["run", *TINY, "--dataset", "food-101"], None, 2, ["did you mean 'food101'"]),
    "unknown-config-key": (lambda t: ["run", *TINY, "--set", "colour=red"], None, 2, ["config key colour"]),
    "seeds-not-integers": (lambda t: [*RUN[:-1], "x"], None, 2, ["seeds must be integers"]),
    "steps-zero": (lambda t: [*RUN, "--steps", "0"], None, 2, ["--steps must be positive"]),
    "steps-negative": (lambda t: [*RUN, "--steps", "-5"], None, 2, ["--steps must be positive"]),
    "method-missing": (lambda t: ["run", "--task", "dit-transfer"], None, 2, ["required: --method"]),
    "malformed-yaml": (lambda t: ["run", "--task", _json(t, "version: 1\nbase: {train: [1, 2\n", "bad.yaml"), *TINY[2:]],
                       None, 2, ["malformed YAML"]),
    "validate-missing-file": (lambda t: ["validate", t / "nope.yaml"], None, 2, ["no such file"]),
    "export-results-is-a-file": (lambda t: ["export", "--results-dir", _a_file(t), "--out", t / "x.parquet"], None, 2,
                                 ["is not a folder"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_changes_nothing(case, isolated_dirs, committed):
    make_args, make_env, rc, needles = CASES[case]
    tmp = isolated_dirs
    args = make_args(tmp)
    env = {"PYTHONDONTWRITEBYTECODE": "1", **(make_env(tmp) if make_env else {})}
    before = _tree(tmp)
    proc = bench_cli(*args, env_extra=env, timeout=300)
    assert proc.returncode == rc, f"rc={proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}"
    _one_error_line(proc, *needles)
    after = _tree(tmp)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert changed in ([], ["cache"]), f"written: {changed}"  # at most the (empty) cache folder itself
    assert not any((tmp / "cache").rglob("*"))
    _assert_committed_unchanged(committed)


def test_a_bug_shows_its_traceback_with_bench_debug(isolated_dirs):
    task = _task_variant(isolated_dirs, "family: class-transfer", "family: boom_family:Boom")
    proc = bench_cli("run", "--task", task, *TINY[2:], "--dataset", "food101", "--seeds", "0",
                     env_extra={"BENCH_DEBUG": "1", "PYTHONDONTWRITEBYTECODE": "1", **_boom_family(isolated_dirs)})
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "ZeroDivisionError" in proc.stderr


def test_a_closed_pipe_ends_quietly(isolated_dirs):
    """`bench ls | head`: the reader goes away before bench writes; no traceback, exit 141."""
    proc = subprocess.Popen([sys.executable, "-m", "bench", "ls"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    proc.stdout.close()  # before the first line is written
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141, err.decode()
    assert err.decode().strip() == ""


# -- report commands never overwrite the committed reports ------------------------------------

def test_report_defaults_follow_the_results_folder(tmp_path):
    from bench.paths import project_root, report_outputs

    ours = report_outputs(project_root() / "results")
    assert ours["markdown"] == project_root() / "LEADERBOARD.md"
    assert ours["tables"] == project_root() / "reports" / "tables"
    other = report_outputs(tmp_path / "out" / "all")
    assert set(other.values()) == {tmp_path / "out" / "all-reports" / name for name in
                                   ("LEADERBOARD.md", "tables", "index.html", "figures", "results.parquet")}
    beside = report_outputs(project_root() / "results-gpu")  # a folder beside results/: not the committed ones
    assert beside["markdown"] == project_root().resolve() / "results-gpu-reports" / "LEADERBOARD.md"


def test_leaderboard_on_another_folder_leaves_committed_reports(tmp_path, committed):
    """The issue's `bench leaderboard --results out/all` with default outputs, and `bench export`
    through the old `--results` spelling: both write beside out/all, nothing committed changes."""
    from test_report import populate

    results = tmp_path / "out" / "all"
    populate(results)
    proc = bench_cli("leaderboard", "--results-dir", results, "--no-html")
    assert proc.returncode == 0, proc.stderr
    reports = tmp_path / "out" / "all-reports"
    assert (reports / "LEADERBOARD.md").exists() and (reports / "tables" / "reproduced.csv").exists()
    assert str(reports / "LEADERBOARD.md") in proc.stdout
    export = bench_cli("export", "--results", results)
    assert export.returncode == 0, export.stderr
    assert (reports / "results.parquet").exists()
    _assert_committed_unchanged(committed)


def test_stale_tables_are_only_those_leaderboard_wrote(tmp_path):
    from test_report import populate

    populate(tmp_path / "results")
    tables = tmp_path / "tables"
    tables.mkdir()
    mark = "% Generated by `bench leaderboard` from results/ (mine); do not edit.\n"
    (tables / "mine.tex").write_text(mark)  # carries the mark, but bench did not write it here
    (tables / "reproduced-2025.csv").write_text("a,b\n")
    (tables / "gone.tex").write_text(mark)  # written by an earlier run, no longer produced
    (tables / ".bench-leaderboard-files").write_text("# earlier run\ngone.tex\nreproduced.csv\n")
    args = ["leaderboard", "--results-dir", tmp_path / "results", "--out", tmp_path / "L.md", "--tables-dir", tables,
            "--no-html"]
    bench_cli(*args, check_rc=0)
    assert not (tables / "gone.tex").exists()
    assert (tables / "mine.tex").read_text() == mark and (tables / "reproduced-2025.csv").exists()
    listed = (tables / ".bench-leaderboard-files").read_text().splitlines()
    assert "reproduced.csv" in listed and "mine.tex" not in listed and "gone.tex" not in listed
    # Running again deletes nothing that is still produced, and still not the user's files.
    bench_cli(*args, check_rc=0)
    assert (tables / "mine.tex").exists() and (tables / "reproduced.csv").exists()


# -- checkpoints: tampering and collisions ----------------------------------------------------

def _train(ckpt: Path, steps: int = 4, resume: bool = False, stop_at: int | None = None):
    """A few steps of the tiny DiT through the shared trainer (as tests/test_resume.py)."""
    from bench.backbone import load_backbone, noise_schedule, state_sha256
    from bench.data import load_split
    from bench.families.class_transfer import labelled_batch
    from bench.method import TrainContext
    from bench.registry import build_method
    from bench.spec import TrainSpec
    from bench.tasks import load_task
    from bench.trainer import train

    task = load_task("dit-transfer", "tiny")
    backbone = load_backbone(task.spec.backbone)
    ds = task.spec.datasets["food101"]
    data = load_split(ds, "train", task.spec.image_size)
    method = build_method("full-ft")
    ctx = TrainContext(backbone, ds, 1000, 4)
    if stop_at is not None:  # a crash right after step `stop_at` was checkpointed
        crash_after(method, stop_at)
    spec = TrainSpec(batch_size=4, steps=steps, lr=1e-3, checkpoint_every=2)
    try:
        outcome = train(method, ctx, lambda: labelled_batch(data, ctx.backbone, spec.batch_size, spec),
                        spec, noise_schedule(task.spec.diffusion), seed=3, steps=steps, ckpt_dir=ckpt, resume=resume)
    except Interrupt:
        return None
    return outcome.resumed_from, state_sha256(backbone.model.state_dict())


def _flip_a_tensor_bit(path: Path) -> None:
    """One bit of the last tensor's data, the header (and its metadata) intact."""
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10
    path.write_bytes(bytes(data))


def test_checkpoint_changed_on_disk_is_refused_on_resume(tmp_path):
    from bench.checkpoints import latest_checkpoint, load_checkpoint_state
    from bench.errors import BenchError

    ckpt = tmp_path / "ckpt"
    assert _train(ckpt, stop_at=2) is None
    last = latest_checkpoint(ckpt)
    assert last.name == "step-2.safetensors"
    intact = last.read_bytes()
    _flip_a_tensor_bit(last)
    with pytest.raises(BenchError) as err:
        _train(ckpt, resume=True)
    line = str(err.value)
    assert err.value.exit_code == 2 and "\n" not in line
    assert "does not match the sha256 recorded in it" in line and "without --resume" in line
    with pytest.raises(BenchError, match="does not match the sha256"):
        load_checkpoint_state(last)  # analyses and --backbone-from read through the same check
    assert last.exists()  # refused, not deleted

    last.write_bytes(intact)  # the intact checkpoint resumes
    resumed_from, _ = _train(ckpt, resume=True)
    assert resumed_from == 2


def test_checkpoint_without_checksum_is_refused_on_resume(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from bench.checkpoints import CHECKSUM_KEY, latest_checkpoint
    from bench.errors import BenchError

    ckpt = tmp_path / "ckpt"
    assert _train(ckpt, stop_at=2) is None
    last = latest_checkpoint(ckpt)
    with safe_open(str(last), "pt") as f:
        meta = f.metadata()
    assert len(meta[CHECKSUM_KEY]) == 64
    save_file(load_file(last), last, metadata={k: v for k, v in meta.items() if k != CHECKSUM_KEY})  # as before checksums
    with pytest.raises(BenchError, match="predates checkpoint checksums"):
        _train(ckpt, resume=True)


def test_resume_without_a_checkpoint_says_so(tmp_path, capsys):
    resumed_from, _ = _train(tmp_path / "ckpt", steps=2, resume=True)
    assert resumed_from == 0
    assert "no checkpoint to resume from" in capsys.readouterr().out


def test_two_results_folders_sharing_a_cache_keep_their_checkpoints(tmp_path):
    from bench.checkpoints import latest_checkpoint
    from bench.paths import checkpoint_dir

    rel = Path("dit-transfer@v2/tiny/full-ft/0123456789ab/food101/seed0.json")
    a, b = tmp_path / "a" / "results", tmp_path / "b" / "results"
    ckpt_a, ckpt_b = checkpoint_dir(a / rel), checkpoint_dir(b / rel)
    assert ckpt_a != ckpt_b
    assert checkpoint_dir(a / rel) == ckpt_a  # stable for one folder
    # The same folder seen from another process (a resumed job) finds the same checkpoints.
    other = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from bench.paths import "
                            "checkpoint_dir; print(checkpoint_dir(Path(sys.argv[1])))", str(a / rel)],
                           capture_output=True, text=True, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert Path(other.stdout.strip()) == ckpt_a

    assert _train(ckpt_a, stop_at=2) is None  # an interrupted run in folder a
    assert _train(ckpt_b) is not None  # a fresh run of the same key in folder b
    assert latest_checkpoint(ckpt_a).name == "step-2.safetensors"  # a's checkpoints survive
    resumed_from, _ = _train(ckpt_a, resume=True)
    assert resumed_from == 2

    # Another machine with a results folder at the same path (not shared storage) gets its own.
    a.rename(tmp_path / "a" / "results-moved")
    a.mkdir()
    assert checkpoint_dir(a / rel) != ckpt_a


def test_a_tampered_tiny_extractor_is_refused_before_any_work(tmp_path, monkeypatch):
    """The tiny extractor's weights are pinned by their committed manifest: a changed file (which
    gave FID 135.00 instead of 134.73 under the same run identity) is one error line at plan
    time. A copy is tampered, never the committed file."""
    import shutil

    from bench.errors import BenchError
    from bench.features import tiny
    from bench.runner import plan
    from bench.tasks import load_task

    for name in ("extractor.safetensors", "extractor.json"):
        shutil.copy(tiny.WEIGHTS.with_name(name), tmp_path / name)
    copy = tmp_path / "extractor.safetensors"
    monkeypatch.setattr(tiny, "WEIGHTS", copy)
    assert tiny.TinyExtractor().weights_sha256 == tiny.pinned_sha256()  # the intact copy loads
    data = bytearray(copy.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    copy.write_bytes(bytes(data))
    with pytest.raises(BenchError) as err:
        plan(load_task("dit-transfer", "tiny"), "full-ft", {}, ["food101"], [0], None)
    message = str(err.value)
    assert "\n" not in message and "tiny extractor" in message and "bench build-tiny extractor" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["extractor.json", "extractor.safetensors"]  # nothing written
    (tmp_path / "extractor.json").unlink()  # and a pin that cannot be read is refused too
    with pytest.raises(BenchError, match="manifest"):
        tiny.TinyExtractor()
