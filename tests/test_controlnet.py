"""controlnet-convergence (family controlnet): the layouts' exact condition maps, the text-to-image
backbone with its ControlNet, the condition measures, the tracked curve and its sudden-convergence
rule, Diff-Tuning's bank for ControlNet, the CLI down to the leaderboard, the committed results'
detected steps, and the paper profile's one-line refusal offline."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bench.backbone import adapter_class, load_backbone
from bench.families.controlnet.conditions import binary_f1, condition_mse, get_condition_extractor, mean_iou
from bench.families.controlnet.conditions.tiny import classes_of
from bench.data.layouts import CONDITIONS, condition_maps, generate_layouts, normals_from_depth
from bench.families.controlnet import ControlNetFamily
from bench.method import TrainContext
from bench.registry import build_method
from bench.families.controlnet import report
from bench.tasks import load_task
from bench.tracking_rules import FirstBelow
from conftest import ROOT, bench_cli, result_files, small_task_file

TASK = load_task("controlnet-convergence", "tiny")


def layouts(n=16, seed=0):
    return generate_layouts(n, np.random.default_rng([seed, 0]), 32)


def test_condition_maps_are_exact_by_construction():
    lay = layouts()
    seg = condition_maps("segmentation", lay)
    assert (classes_of(seg) == lay.seg).all()  # the palette image decodes back to the class map
    flat = normals_from_depth(np.full((1, 8, 8), 0.4, np.float32))
    assert np.allclose(flat[0, :, 2:-2, 2:-2].reshape(3, -1).T, [0.5, 0.5, 1.0])  # a flat surface faces the camera
    sketch = condition_maps("sketch", lay)
    assert set(np.unique(sketch)) <= {0.0, 1.0} and sketch.mean() > 0.02
    assert (condition_maps("depth", lay)[:, 0] == lay.depth).all()
    for name in CONDITIONS:
        m = condition_maps(name, lay)
        assert m.shape == (16, 3, 32, 32) and m.dtype == np.float32 and 0 <= m.min() and m.max() <= 1


def test_condition_scores_on_known_pairs():
    lay = layouts()
    seg = lay.seg
    assert mean_iou(seg, seg) == 1.0
    half = seg.copy()
    half[:, :, :16] = 0  # half of every map wrong
    assert 0.2 < mean_iou(half, seg) < 0.8
    edges = condition_maps("edge", lay)
    assert binary_f1(edges, edges) == 1.0 and binary_f1(np.zeros_like(edges), edges) == 0.0
    assert condition_mse(edges, edges) == 0.0 and condition_mse(1 - edges, edges) == 1.0


def test_canny_extractor_is_opencv_on_the_image():
    import cv2

    lay = layouts(4)
    got = get_condition_extractor("canny")(lay.images)
    want = np.stack([cv2.Canny(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), 100, 200) > 0 for im in lay.images])
    assert (got[:, 0] == want).all() and (got[:, 1] == got[:, 0]).all()


@pytest.mark.parametrize("name", ["tiny-sketch", "tiny-depth", "tiny-normal", "tiny-seg"])
def test_tiny_estimators_recover_held_out_maps(name):
    """Trained here on other layouts: far better than a constant guess on unseen scenes."""
    lay = layouts(64, seed=99)
    ex = get_condition_extractor(name, TASK.spec.params["estimators_sha256"])
    cond = {"tiny-sketch": "sketch", "tiny-depth": "depth", "tiny-normal": "normal", "tiny-seg": "segmentation"}[name]
    ref = condition_maps(cond, lay)
    pred = ex(lay.images)
    const = np.broadcast_to(ref.mean(0, keepdims=True), ref.shape)
    assert condition_mse(pred, ref) < 0.6 * condition_mse(const, ref)


def test_tampered_estimator_weights_stop_the_run_with_one_line(tmp_path):
    bad = bench_cli("run", "--task", "controlnet-convergence", "--method", "controlnet", "--profile", "tiny",
                    "--task-set", "params.estimators_sha256=" + "ab" * 32, "--seeds", "0")
    assert bad.returncode != 0
    line = bad.stderr.strip().splitlines()[-1]
    assert "condition estimator weights" in line and "sha256" in line and "build-tiny conditions" in line
    assert result_files(tmp_path / "results") == []


def controlled_backbone(seed=0):
    torch.manual_seed(seed)
    return load_backbone(TASK.spec.backbone)


def test_a_fresh_controlnet_leaves_the_pretrained_model_unchanged():
    """Zero convolutions: at step 0 the controlled model equals the UNet alone, whatever the map."""
    bb = controlled_backbone()
    x, t = torch.randn(4, 3, 32, 32), torch.tensor([10, 300, 600, 900])
    ids = bb.tokenize(layouts(4).captions)
    with torch.no_grad():
        plain = bb.output(x, t, {"input_ids": ids})
        controlled = bb.output(x, t, {"input_ids": ids, "control": torch.rand(4, 3, 32, 32)})
    assert torch.equal(plain, controlled)
    # and the ControlNet does move the output once its zero convolutions are not zero
    with torch.no_grad():
        for p in bb.model.controlnet.controlnet_mid_block.parameters():
            p.fill_(0.01)
        moved = bb.output(x, t, {"input_ids": ids, "control": torch.rand(4, 3, 32, 32)})
    assert not torch.allclose(moved, plain)


def test_controlnet_method_trains_the_controlnet_only():
    bb = controlled_backbone()
    ctx = TrainContext(backbone=bb, dataset=None, num_timesteps=1000, batch_size=4)
    method = build_method("controlnet", {}, family="controlnet")
    model = method.prepare(bb.model, ctx)
    trainable = {n.split(".")[0] for n, _ in method.trainable_parameters(model)}
    assert trainable == {"controlnet"}
    assert sum(p.numel() for _, p in method.trainable_parameters(model)) == \
        sum(p.numel() for p in bb.model.controlnet.parameters())


def test_paper_architecture_counts_on_meta():
    """SD v1.5's UNet (859.52M) and its ControlNet (361.28M), built without weights."""
    from bench.spec import BackboneSpec

    spec = BackboneSpec(kind="sd-controlnet", pretrained={"repo": "x/y"}, config={"preset": "sd15"})
    model = adapter_class("sd-controlnet").build_without_weights(spec)
    assert sum(p.numel() for p in model.unet.parameters()) == 859_520_964
    assert sum(p.numel() for p in model.text_encoder.parameters()) == 123_060_480
    assert 361e6 < sum(p.numel() for p in model.controlnet.parameters()) < 362e6


def family(task=TASK, dataset="depth"):
    fam = ControlNetFamily(task, dataset)
    fam.load_data()
    fam.bind(controlled_backbone())
    return fam


def test_batches_drop_half_the_prompts_and_carry_the_condition(tmp_path):
    fam = family(load_task(str(small_task_file(tmp_path, "controlnet-convergence")), "tiny"))
    torch.manual_seed(0)
    batch = fam.draw_batch(TASK.spec.train.model_copy(update={"batch_size": 400}))
    assert set(batch) == {"x0", "input_ids", "control"} and batch["control"].shape == (400, 3, 32, 32)
    empty = (batch["input_ids"] == fam.backbone.empty_ids).all(1).float().mean().item()
    assert abs(empty - 0.5) < 0.1
    rule = fam.tracking_rules()[0]
    assert isinstance(rule, FirstBelow) and rule.threshold == TASK.spec.params["conditions"]["depth"]["threshold"]


def test_diff_tuning_bank_rows_pair_a_sample_with_its_extracted_condition(tmp_path):
    task = load_task(str(small_task_file(tmp_path, "controlnet-convergence")), "tiny")
    fam = family(task, "edge")
    bank = fam.extra("knowledge_bank")
    assert set(bank) == {"x0", "input_ids", "control"} and len(bank["x0"]) == 16
    images = ((bank["x0"].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(bank["control"].numpy(), fam.extractor(images))  # the condition of that very image
    method = build_method("controlnet+diff-tuning", {}, family="controlnet")
    ctx = TrainContext(backbone=fam.backbone, dataset=fam.dataset, num_timesteps=1000, batch_size=10,
                       extra_data=fam.extra)
    torch.manual_seed(0)
    batch = method.make_batch(fam.draw_batch(task.spec.train.model_copy(update={"batch_size": 10})), ctx)
    rows = batch["bank"].nonzero().flatten()
    assert len(rows) == 2 and all(any(torch.equal(batch["control"][r], c) for c in bank["control"]) for r in rows)


def test_the_issue_command_writes_curves_and_the_detected_step_and_reaches_the_leaderboard(tmp_path):
    task = small_task_file(tmp_path, "controlnet-convergence")
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "cn-small.yaml").write_text(
        task.read_text().replace("name: controlnet-convergence", "name: cn-small"))
    env = {"BENCH_TASKS_PATH": str(tmp_path / "tasks")}
    for method, conditions in (("controlnet", ["edge"]), ("controlnet+diff-tuning", ["edge", "depth"])):
        bench_cli("run", "--task", "cn-small", "--method", method, "--profile", "tiny", "--seeds", "0",
                  *(a for c in conditions for a in ("--dataset", c)), check_rc=0, env_extra=env)
    files = result_files(tmp_path / "results")
    assert len(files) == 3
    for f in files:
        r = json.loads(f.read_text())
        tr = r["tracking"]
        assert [p[0] for p in tr["curves"]["mse"]] == [0, 3, 6]
        (event,) = tr["events"]
        assert event == {**FirstBelow(metric="mse", threshold=event["threshold"], hold=2).detect(tr["curves"]["mse"]),
                         "sensitivity": event["sensitivity"]}
        assert [s["relative_change"] for s in event["sensitivity"]] == [-0.2, 0.0, 0.2]
        assert len(tr["artifacts"]["strip"]) == 3 and r["condition"]["name"] == r["dataset"]
        assert r["metrics"]["condition_mse"] >= 0 and "fid" in r["metrics"]
    out = tmp_path / "LB.md"
    bench_cli("leaderboard", "--results", tmp_path / "results", "--out", out, "--tables-dir", tmp_path / "tables",
              "--no-html", check_rc=0, env_extra=env)
    text = out.read_text()
    assert "## ControlNet sudden convergence (controlnet-convergence)" in text
    assert "Steps to threshold, declared rule (Table 2 analog; no calibration committed)" in text  # cn-small has none
    assert "threshold ±20%" in text and "Threshold-free statistics and the transition's shape" in text
    bench_cli("figures", "--results", tmp_path / "results", "--out", tmp_path / "figs", check_rc=0, env_extra=env)
    names = {p.name for p in (tmp_path / "figs").glob("*.png")}
    assert "cn-small-v1-tiny-controlnet-mse.png" in names and "cn-small-v1-tiny-controlnet-samples-edge.png" in names


def _fake(method, condition, seed, step):
    curve = [[0, 0.2], [25, 0.2], [50, 0.01 if step == 50 else 0.2], [75, 0.01 if step else 0.2], [100, 0.01 if step else 0.2]]
    event = FirstBelow(metric="mse", threshold=0.05, hold=2).detect(curve)
    data = {"family": "controlnet", "method": method, "dataset": condition, "seed": seed, "sweep": {},
            "task_overrides": {}, "budget_override": False, "tracking": {"curves": {"mse": curve}, "events": [event]}}
    return SimpleNamespace(data=SimpleNamespace(**{k: v for k, v in data.items() if k != "tracking"},
                                                model_dump=lambda mode=None: data))


def test_speedup_is_paired_by_seed_and_not_reached_is_never_imputed():
    items = [_fake("controlnet", c, s, 75) for c in ("edge", "depth") for s in (0, 1)]
    items += [_fake("controlnet+diff-tuning", "edge", s, 50) for s in (0, 1)]
    items += [_fake("controlnet+diff-tuning", "depth", 0, 50), _fake("controlnet+diff-tuning", "depth", 1, None)]
    g = report.runs_by(items)
    assert report.steps_of(g["controlnet+diff-tuning"]["depth"]) == ({0: 50}, 1, 0)
    sp, conds = report.speedup(g, "controlnet+diff-tuning")
    assert conds == ["edge"] and sp == [1 - 50 / 75] * 2  # depth left out: one seed never converged
    sp_all = report.speedup(report.runs_by(items[:4] + [_fake("controlnet+diff-tuning", c, s, 50)
                                                        for c in ("edge", "depth") for s in (0, 1)]),
                            "controlnet+diff-tuning")
    assert sp_all == ([1 - 50 / 75] * 2, ["edge", "depth"])


def test_mean_tracked_mse_is_paired_by_seed_and_positive_for_the_method_that_converges_first():
    """The threshold-free mean MSE over training (the report's note): 1 - ratio of the mean over
    conditions of each run's curve average, per seed; identical curves give exactly 0."""
    from bench.curve_stats import auc_mean

    items = [_fake("controlnet", c, s, 75) for c in ("edge", "depth") for s in (0, 1)]
    faster = items + [_fake("controlnet+diff-tuning", c, s, 50) for c in ("edge", "depth") for s in (0, 1)]
    same = items + [_fake("controlnet+diff-tuning", c, s, 75) for c in ("edge", "depth") for s in (0, 1)]
    a = auc_mean(report._mse(items[0].data.model_dump()))
    b = auc_mean(report._mse(faster[-1].data.model_dump()))
    assert report._speedup_by(report.runs_by(faster), "controlnet+diff-tuning", ["edge", "depth"],
                              report._auc) == pytest.approx([1 - b / a] * 2) and b < a
    assert report._speedup_by(report.runs_by(same), "controlnet+diff-tuning", ["edge", "depth"], report._auc) == [0.0] * 2


def test_paper_profile_offline_names_everything_missing_in_one_line(tmp_path):
    bad = bench_cli("run", "--task", "controlnet-convergence", "--method", "controlnet", "--profile", "paper",
                    "--seeds", "0", env_extra={"HF_HOME": str(tmp_path / "hf")})
    assert bad.returncode != 0
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1, bad.stderr
    line = lines[0]
    for what in ("stable-diffusion-v1-5", "controlnet_aux", '.[paper]', "Intel/dpt-large", "upernet",
                 "limingcv/Captioned_COCOStuff", "limingcv/Captioned_ADE20K", "huggingface-cli download"):
        assert what in line, what
    assert result_files(tmp_path / "results") == []
def test_a_missing_annotator_package_names_the_paper_extra(monkeypatch):
    import sys

    from bench.errors import BenchError
    from bench.families.controlnet.conditions import annotators

    for module in ("controlnet_aux", "transformers"):
        monkeypatch.setitem(sys.modules, module, None)  # `import` raises ImportError
    annotators._aux.cache_clear(), annotators._transformers_model.cache_clear()
    for load in (lambda: annotators._aux("HEDdetector"), lambda: annotators._transformers_model("X", annotators.DPT)):
        with pytest.raises(BenchError) as err:
            load()
        assert 'pip install -c constraints.txt -e ".[paper]"' in str(err.value) and "\n" not in str(err.value)
    annotators._aux.cache_clear(), annotators._transformers_model.cache_clear()


COMMITTED = sorted((ROOT / "results").glob("controlnet-convergence@v*/tiny/**/seed*.json"))


def test_committed_results_exist_for_both_methods_five_conditions_and_the_powered_seeds():
    got = {(json.loads(p.read_text())["method"], json.loads(p.read_text())["dataset"], json.loads(p.read_text())["seed"])
           for p in COMMITTED}
    seeds = load_task("controlnet-convergence", "tiny").spec.seeds  # sized by scripts/controlnet_power.py
    assert {(m, c, s) for m in ("controlnet", "controlnet+diff-tuning") for c in CONDITIONS for s in seeds} <= got
    assert "mean tracked MSE over training (threshold-free" in (ROOT / "LEADERBOARD.md").read_text()


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(ROOT / "results")))
def test_committed_detected_step_follows_from_its_own_curve_and_the_declared_rule(path):
    r = json.loads(path.read_text())
    task = load_task("controlnet-convergence", "tiny")
    declared = task.spec.params
    rule = FirstBelow(metric="mse", threshold=declared["conditions"][r["dataset"]]["threshold"],
                      hold=declared.get("hold", 2))
    (event,) = r["tracking"]["events"]
    recomputed = rule.detect(r["tracking"]["curves"]["mse"])
    assert {k: event[k] for k in recomputed} == recomputed


def test_paper_segmentation_tracks_pixel_class_error_not_palette_mse():
    """Two ADE20k classes' palette colours are arbitrary: the paper's tracked distance for
    segmentation counts pixels of another class; the tiny estimator keeps its palette MSE."""
    from bench.families.controlnet.conditions import ConditionExtractor
    from bench.families.controlnet.conditions.annotators import ADE_PALETTE, UperNetSeg

    ref = np.zeros((2, 8, 8), np.int64)
    pred = ref.copy()
    pred[:, :2] = 1  # a quarter of the pixels of another class
    to_map = lambda c: (ADE_PALETTE[c].astype(np.float32) / 255).transpose(0, 3, 1, 2)
    seg = UperNetSeg.__new__(UperNetSeg)  # no weights needed to score
    assert seg.distance(to_map(pred), to_map(ref)) == 0.25
    assert get_condition_extractor("tiny-seg", TASK.spec.params["estimators_sha256"]).distance.__func__ \
        is ConditionExtractor.distance
