"""The chain-of-forgetting analysis on a real (random-init, tiny) DiT: a real 2-step fine-tuning
run through the runner, then the analysis, then the report reading its files.

The tiny profile's committed weights may not exist yet, so the backbone is a randomly initialised
DiT of the tiny architecture saved to a temporary file, and the feature extractor a randomly
initialised TinyCNN; everything else (runner, sampler, cache, FID, result files) is the real code.
"""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from conftest import ROOT, bench_cli, small_task_file
from diffusers import DiTTransformer2DModel
from safetensors.torch import save_file

from bench.analysis import chain_of_forgetting as cof
from bench.backbone import load_backbone
from bench.features.cache import images_sha256
from bench.hashing import file_sha256
from bench.features.tiny import TinyCNN
from bench.planning import plan_run
from bench.registry import build_method
from bench.runner import execute
from bench.sampling import balanced_labels, sample
from bench.tasks import load_task


@pytest.fixture()
def tiny_task(tmp_path, monkeypatch):
    raw = yaml.safe_load((ROOT / "tasks" / "dit-transfer.yaml").read_text())
    backbone = dict(raw["profiles"]["tiny"]["backbone"])
    torch.manual_seed(0)
    model = DiTTransformer2DModel(**backbone["config"])
    # A converted DiT has one condition embedder, copied into every block (bench/backbone/dit.py checks it).
    emb = model.transformer_blocks[0].norm1.emb.state_dict()
    for block in model.transformer_blocks[1:]:
        block.norm1.emb.load_state_dict(emb)
    weights = tmp_path / "dit-random.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    backbone.update(weights=str(weights), weights_sha256=None)  # absolute path: outside bench/assets
    extractor = tmp_path / "extractor.safetensors"
    save_file({k: v.contiguous() for k, v in TinyCNN(num_classes=10).state_dict().items()}, extractor)
    # its manifest, as `bench build-tiny extractor` writes one: the loader checks the file against it
    (tmp_path / "extractor.json").write_text(json.dumps({"sha256": file_sha256(extractor)}))
    monkeypatch.setattr("bench.features.tiny.WEIGHTS", extractor)
    return load_task(str(small_task_file(tmp_path, backbone=backbone)), "tiny")


def test_schedule_hands_the_data_end_to_the_pretrained_model():
    pre, ft = torch.nn.Identity(), torch.nn.Identity()
    at = cof.denoiser_schedule(0.5, pre, ft)
    assert [at(i, 4) is pre for i in range(4)] == [False, False, True, True]  # i = 0 is the noise end
    assert [cof.denoiser_schedule(0.0, pre, ft)(i, 5) is ft for i in range(5)] == [True] * 5
    assert [cof.denoiser_schedule(1.0, pre, ft)(i, 5) is pre for i in range(5)] == [True] * 5
    assert cof.steps_replaced(0.25, 10) == 3 and cof.steps_replaced(0.1, 20) == 2


def test_analysis_of_a_real_run_and_its_figure(tmp_path, tiny_task):
    task = tiny_task
    method = build_method("full-ft", {}, family=task.file.family)
    planned = plan_run(task, method, "food101", 0, steps=2)
    run_file = execute(planned, method, log=lambda m: None)
    run = json.loads(run_file.read_text())

    out = cof.run(planned, fractions=[1.0, 0.0, 0.5], num_samples=run["samples"]["n"], log=lambda m: None)
    res = json.loads(out.read_text())
    assert out.parts[-7:-3] == ("tiny", "analysis", "chain-of-forgetting", "full-ft")
    assert [p["fraction"] for p in res["points"]] == [0.0, 0.5, 1.0]
    assert [p["steps_replaced"] for p in res["points"]] == [0, 2, 4]
    # Fraction 0 is the run itself: same samples, same FID.
    assert res["points"][0]["samples_sha256"] == run["samples"]["sha256"]
    assert res["points"][0]["fid"] == pytest.approx(run["metrics"]["fid"], rel=1e-9)
    # Fraction 1 is the pre-trained model alone, with the same labels and noise.
    spec = task.spec
    pre = load_backbone(spec.backbone)
    images = sample(pre, balanced_labels(run["samples"]["n"], spec.datasets["food101"].num_classes),
                    diffusion=spec.diffusion, scheduler=spec.sampling.scheduler, steps=spec.sampling.steps,
                    guidance_scale=spec.sampling.guidance_scale, batch_size=spec.sampling.batch_size, seed=10_000)
    assert res["points"][2]["samples_sha256"] == images_sha256(images)
    assert res["points"][1]["samples_sha256"] not in {res["points"][0]["samples_sha256"],
                                                       res["points"][2]["samples_sha256"]}
    assert res["run"]["result"] == str(run_file.relative_to(run_file.parents[5]))
    assert res["provenance"]["backbone_sha256"] == pre.weights_sha256

    # A second call finds the finished analysis instead of redoing it.
    before = out.stat().st_mtime_ns
    cof.run(planned, fractions=[0.0, 0.5, 1.0], num_samples=run["samples"]["n"], log=lambda m: None)
    assert out.stat().st_mtime_ns == before

    # The report reads it: a chain-of-forgetting figure and table, nothing else recomputed.
    from bench.report.build import Outputs, build_figures, build_leaderboard

    results = run_file.parents[5]
    figs = build_figures(results, tmp_path / "figs", log=lambda m: None)
    stem = f"dit-transfer-v{task.file.version}-tiny-chain-of-forgetting"
    assert (tmp_path / "figs" / f"{stem}.png") in figs
    assert (tmp_path / "figs" / f"{stem}.pdf").read_bytes().startswith(b"%PDF")
    md = tmp_path / "LB.md"
    build_leaderboard(results, Outputs(md, tmp_path / "tables", None, tmp_path / "figs"), log=lambda m: None)
    text = md.read_text()
    assert "Chain of forgetting" in text and f"{res['points'][0]['fid']:.2f} (no CI) (n=1)" in text
    assert (tmp_path / "tables" / f"{stem}.csv").exists()


def test_bad_analysis_input_is_one_line_and_writes_nothing(tmp_path):
    proc = bench_cli("analyze", "chain-of-forgetting", "--task", "dit-transfer", "--method", "full-ft",
                     "--profile", "tiny", "--fractions", "0,1.5")
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --fractions must lie in [0, 1], got [1.5]"
    proc = bench_cli("analyze", "chain-of-forgetting", "--task", "dit-transfer", "--method", "ful-ft",
                     "--profile", "tiny")
    assert proc.returncode == 2 and "did you mean 'full-ft'" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert not (tmp_path / "results").exists()
