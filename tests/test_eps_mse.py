"""The per-timestep epsilon-MSE diagnostic (issue 30, 1a) against a direct computation on a tiny DiT."""

from __future__ import annotations

import torch
from diffusers import DiTTransformer2DModel
from test_report_chain_of_forgetting import tiny_task  # noqa: F401  (a fixture)

from bench.analysis import eps_mse as E
from bench.backbone import adapter_class, noise_schedule
from bench.spec import BackboneSpec, DiffusionSpec

CONFIG = {"sample_size": 8, "patch_size": 2, "in_channels": 3, "out_channels": 6, "num_layers": 1,
          "num_attention_heads": 2, "attention_head_dim": 8, "num_embeds_ada_norm": 4, "norm_type": "ada_norm_zero"}


def tiny_backbone():
    spec = BackboneSpec(kind="dit", from_scratch=True, num_source_classes=4, config=CONFIG)
    torch.manual_seed(0)
    return adapter_class("dit").from_scratch(spec)


def test_timesteps_are_bucket_centres():
    assert E.timesteps(20, 1000) == list(range(25, 1000, 50))
    assert E.timesteps(1000, 1000) == list(range(1000))


def test_eps_mse_matches_a_direct_computation():
    backbone = tiny_backbone()
    backbone.model.eval()
    diffusion = DiffusionSpec(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    schedule = noise_schedule(diffusion)
    x0 = torch.rand(5, 3, 8, 8) * 2 - 1
    y = torch.tensor([0, 1, 2, 3, 0])
    ts = [25, 500, 975]
    got = E.eps_mse(backbone, x0, y, ts, schedule, batch_size=2)  # batches of 2, 2, 1
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    model: DiTTransformer2DModel = backbone.model
    for t, value in zip(ts, got):
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(E.NOISE_SEED * 100_003 + t))
        a = abar[t].float()
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with torch.no_grad():
            out = model(x_t, timestep=torch.full((5,), t), class_labels=y).sample
        want = float((out[:, :3] - noise).pow(2).mean())
        assert abs(value - want) < 1e-5 * max(1.0, want), (t, value, want)
    # the same noise for every model: a second call gives the same numbers
    assert E.eps_mse(backbone, x0, y, ts, schedule, batch_size=2) == got


def test_analysis_of_a_real_run_its_table_and_its_figure(tmp_path, tiny_task):
    import json

    from bench.backbone import load_backbone
    from bench.planning import plan_run
    from bench.registry import build_method
    from bench.report.build import Outputs, build_figures, build_leaderboard
    from bench.runner import execute, load_finetuned

    task = tiny_task
    method = build_method("full-ft", {}, family=task.file.family)
    planned = plan_run(task, method, "food101", 0, steps=2)
    run_file = execute(planned, method, log=lambda m: None)
    out = E.run(planned, buckets=4, num_images=6, log=lambda m: None)
    res = json.loads(out.read_text())
    assert out.parts[-7:-3] == ("tiny", "analysis", "eps-mse", "full-ft")
    assert res["timesteps"] == [125, 375, 625, 875] and res["run"]["rebuilt"] is None
    # against the same computation on each model, done here
    images, labels, _ = E.target_images(task, "food101", 6)
    pre = load_backbone(task.spec.backbone)
    x0 = pre.encode(images)
    schedule = noise_schedule(task.spec.diffusion)
    base = E.eps_mse(pre, x0, labels, res["timesteps"], schedule)
    tuned = E.eps_mse(load_finetuned(planned, planned.build_method())[0], x0, labels, res["timesteps"], schedule)
    assert [p["mse_pretrained"] for p in res["points"]] == base
    assert [p["mse"] for p in res["points"]] == tuned
    assert [p["relative"] for p in res["points"]] == [m / b for m, b in zip(tuned, base)]
    before = out.stat().st_mtime_ns
    E.run(planned, buckets=4, num_images=6, log=lambda m: None)  # complete: skipped
    assert out.stat().st_mtime_ns == before

    results = run_file.parents[5]
    figs = build_figures(results, tmp_path / "figs", log=lambda m: None)
    stem = f"dit-transfer-v{task.file.version}-tiny-eps-mse"
    assert (tmp_path / "figs" / f"{stem}.png") in figs
    md = tmp_path / "LB.md"
    build_leaderboard(results, Outputs(md, tmp_path / "tables", None, tmp_path / "figs"), log=lambda m: None)
    text = md.read_text()
    assert "Epsilon MSE relative to the pre-trained model" in text
    assert f"{res['points'][0]['relative']:.3f} (no CI) (n=1)" in text
    assert (tmp_path / "tables" / f"{stem}.csv").exists()
