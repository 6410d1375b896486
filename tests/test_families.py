"""The family, backbone and tracking seams: a family from outside the package runs end to end
through the CLI, plan-time checks join methods to backbones and families, tracked curves survive
resume, sweeps expand into keyed runs, and stale results are neither skipped nor aggregated."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from bench.errors import BenchError
from bench.method import Method
from bench.planning import plan_run, stored_identity
from bench.registry import build_method
from bench.runner import check_run, plan
from bench.tasks import load_task
from conftest import ROOT, bench_cli, result_files, small_task_file

TOY = Path(__file__).parent / "toy_family"


def test_a_family_from_a_test_folder_runs_end_to_end_through_the_cli(isolated_dirs):
    env = {"PYTHONPATH": str(TOY), "BENCH_TASKS_PATH": str(TOY)}
    proc = bench_cli("run", "--task", "toy-unconditional", "--method", "full-ft", "--profile", "tiny",
                     env_extra=env, check_rc=0)
    [path] = result_files(isolated_dirs / "results")
    result = json.loads(path.read_text())
    assert result["family"] == "toy_unconditional:ToyUnconditional" and "wrote" in proc.stdout
    fid = result["tracking"]["curves"]["fid"]
    assert [step for step, _ in fid] == [0, 2, 4]  # the pre-trained model, every 2 steps, the last step
    argmin, never = result["tracking"]["events"]
    assert argmin["reached"] and argmin["value"] == min(v for _, v in fid)
    assert never == {**never, "reached": False, "step": None}  # FID below -1: recorded as not reached
    assert result["metrics"]["fid"] > 0 and result["reference"]["sha256"]
    # Skip-complete and the run identity hold for an outside family too.
    again = bench_cli("run", "--task", "toy-unconditional", "--method", "full-ft", "--profile", "tiny",
                      env_extra=env, check_rc=0)
    assert "skip" in again.stdout


class NeedsUNetBlocks(Method):
    name = "needs-unet"
    groups = ("down_blocks",)


def test_a_method_asking_for_a_group_the_backbone_lacks_fails_at_plan_time():
    task = load_task("dit-transfer", "tiny")
    with pytest.raises(BenchError, match=r"targets module group\(s\) \['down_blocks'\] that backbone kind 'dit'"):
        check_run(task, NeedsUNetBlocks())
    check_run(task, build_method("lora"))  # "attention" exists on DiT


def test_a_method_needing_data_the_family_lacks_fails_at_plan_time(monkeypatch):
    monkeypatch.syspath_prepend(str(TOY))
    task = load_task(str(TOY / "toy-unconditional.yaml"), "tiny")
    with pytest.raises(BenchError, match=r"needs extra training data \['knowledge_bank'\].*provides: none"):
        check_run(task, build_method("diff-tuning"))


def test_backbone_groups_name_the_modules_methods_target():
    from bench.backbone import DiTBackbone

    task = load_task("dit-transfer", "paper")
    model = DiTBackbone.build_without_weights(task.spec.backbone)
    bb = DiTBackbone.wrap_without_weights(model, task.spec.backbone)
    assert len(bb.group("blocks")) == 28 and len(bb.group("attention")) == 28
    assert [n for n, _ in bb.module_group("mlp")][:2] == ["transformer_blocks.0.ff", "transformer_blocks.1.ff"]
    assert len(bb.group("class_embedding")) == 1  # one label table shared by every block, as the original DiT
    with pytest.raises(BenchError, match="has no module group 'down_blocks'"):
        bb.group("down_blocks")


def test_sweeps_expand_into_runs_keyed_by_the_swept_value():
    task = load_task("dit-transfer", "tiny")
    points, names, seeds = plan(task, "diff-tuning", {}, ["cub200"], [0], None,
                                sweep={"tau": [0.5, 2], "knowledge_bank.num_images": [100]})
    assert [p.method.config.tau for p in points] == [0.5, 2.0]
    assert all(p.task.spec.knowledge_bank.num_images == 100 for p in points)
    [run] = points[0].runs
    assert (run.dataset, run.seed, run.sweep) == ("cub200", 0, {"knowledge_bank.num_images": 100, "tau": 0.5})
    assert run.config_dir.startswith("knowledge_bank.num_images=100,tau=0.5~") and run.config_dir == run.path.parts[-3]
    assert run.config_dir.endswith(run.config_hash) and run.task_overrides == {"knowledge_bank.num_images": 100}
    [other] = points[1].runs
    assert other.config_dir != run.config_dir
    with pytest.raises(BenchError, match="knowledge_bank.num_imagez"):
        plan(task, "diff-tuning", {}, ["cub200"], [0], None, sweep={"knowledge_bank.num_imagez": [1]})


def test_cli_sweep_writes_one_result_per_value(tmp_path, isolated_dirs):
    small = small_task_file(tmp_path)
    bench_cli("run", "--task", small, "--method", "full-ft", "--profile", "tiny", "--dataset", "food101",
              "--seeds", "0", "--sweep", "train.class_dropout=0,0.5", check_rc=0)
    files = result_files(isolated_dirs / "results")
    sweeps = sorted((json.loads(f.read_text())["sweep"]["train.class_dropout"], f.parts[-3]) for f in files)
    assert [v for v, _ in sweeps] == [0, 0.5]
    assert sweeps[0][1].startswith("train.class_dropout=0~") and sweeps[1][1].startswith("train.class_dropout=0.5~")


def test_tracked_curve_is_bit_identical_after_resume(tmp_path):
    """The curve travels in the checkpoints: an interrupted run ends with the same curve."""
    from bench.backbone import DiTBackbone, noise_schedule
    from bench.data import load_split
    from bench.families.class_transfer import labelled_batch
    from bench.method import TrainContext
    from bench.spec import TrackingSpec, TrainSpec
    from bench.tracking import Tracker
    from bench.trainer import train

    task = load_task("dit-transfer", "tiny")
    data = load_split(task.spec.datasets["food101"], "train", 16)
    spec = TrainSpec(batch_size=4, steps=6, lr=1e-3, checkpoint_every=2)

    def run(ckpt, resume=False, stop_at=None):
        bb = DiTBackbone.load(task.spec.backbone)
        ctx = TrainContext(bb, task.spec.datasets["food101"], 1000, 4)
        # A cheap deterministic "metric" of the current weights stands in for FID.
        tracker = Tracker(TrackingSpec(every_steps=2), ["w"],
                          lambda: {"w": sum(p.double().sum().item() for p in bb.model.parameters())}, 0)
        calls = {"n": 0}

        def draw():
            calls["n"] += 1
            if stop_at is not None and calls["n"] > stop_at:
                raise KeyboardInterrupt
            return labelled_batch(data, bb, 4, spec)

        try:
            train(build_method("full-ft"), ctx, draw, spec, noise_schedule(task.spec.diffusion), seed=1, steps=6,
                  ckpt_dir=ckpt, resume=resume, tracker=tracker)
        except KeyboardInterrupt:
            return None
        return tracker.result()["curves"]["w"]

    straight = run(tmp_path / "a")
    assert [s for s, _ in straight] == [0, 2, 4, 6]
    assert run(tmp_path / "b", stop_at=3) is None
    assert run(tmp_path / "b", resume=True) == straight


def test_committed_results_are_current_and_an_edited_spec_is_stale(tmp_path, isolated_dirs):
    """A committed result matches the task file (so `bench run` skips it); the same result with a
    changed sampler is stale: `bench run` redoes it and reports leave it out, naming it."""
    from bench.report.load import load_results

    src = next((ROOT / "results").glob("limited-data@v1/tiny/full-ft/*/pokemon/seed0.json"))
    rel = src.relative_to(ROOT / "results")
    root = isolated_dirs / "results"
    (root / rel).parent.mkdir(parents=True)
    shutil.copy(src, root / rel)
    task = load_task("limited-data", "tiny")
    method = build_method("full-ft", family="limited-data")
    raw = json.loads(src.read_text())
    data = {"train": raw["provenance"]["train_data_sha256"], "reference": raw["reference"]["sha256"]}
    run = plan_run(task, method, "pokemon", 0).with_data(data)
    assert run.path == root / rel and run.config_hash == raw["config_hash"]
    assert run.identity == raw["run_identity"] == stored_identity(raw) and run.is_current()
    assert len(load_results(root).runs) == 1

    raw["resolved_spec"]["spec"]["sampling"]["guidance_scale"] = 3.0  # as if made under another task file
    (root / rel).write_text(json.dumps(raw))
    assert stored_identity(raw) != run.identity
    assert not run.is_current()
    rs = load_results(root)
    assert rs.runs == [] and len(rs.stale) == 1 and "stale: its run spec no longer matches" in rs.stale_lines()[0]


def test_runner_knows_no_family_or_architecture():
    text = (ROOT / "bench" / "runner.py").read_text()
    for word in ("dit", "DiT", "class_labels", "null_class", "knowledge_bank", "balanced_labels", "ewc"):
        assert word not in text, word
