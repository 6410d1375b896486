"""EWC: the diagonal Fisher of a real (tiny) diffusers DiT, and the penalty over tunable params;
plus the evaluate.py metric table."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, DiTTransformer2DModel

from bench.metrics import MetricInputError, diagonal_fisher, ewc

CONFIG = dict(sample_size=8, patch_size=2, in_channels=3, out_channels=6, num_layers=1, num_attention_heads=2,
              attention_head_dim=8, num_embeds_ada_norm=8, norm_type="ada_norm_zero")


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = DiTTransformer2DModel(**CONFIG)
    for p in model.parameters():  # ada_norm_zero starts at zero output; give every weight a gradient
        p.data.add_(0.02 * torch.randn_like(p))
    x0 = torch.randn(6, 3, 8, 8).clamp(-1, 1)
    return model, DDPMScheduler(num_train_timesteps=50), x0


def test_fisher_is_mean_squared_per_sample_gradient_and_seeded(setup):
    model, sched, x0 = setup
    names = ["pos_embed.proj.weight", "proj_out_2.bias"]
    f1 = diagonal_fisher(model, sched, x0, null_class=8, seed=3, names=names)
    f2 = diagonal_fisher(model, sched, x0, null_class=8, seed=3, names=names)
    f3 = diagonal_fisher(model, sched, x0, null_class=8, seed=4, names=names)
    assert all(torch.equal(f1[k], f2[k]) for k in names)
    assert not torch.equal(f1["proj_out_2.bias"], f3["proj_out_2.bias"])
    assert all((f1[k] >= 0).all() and f1[k].sum() > 0 for k in names)
    # one sample: the Fisher is exactly that sample's squared gradient
    from bench.backbone import eps_prediction

    one = diagonal_fisher(model, sched, x0[:1], labels=torch.tensor([2]), seed=0, names=names)
    gen = torch.Generator().manual_seed(0)
    torch.randperm(1, generator=gen)
    t = torch.randint(0, 50, (1,), generator=gen)
    noise = torch.randn(x0[:1].shape, generator=gen)
    model.zero_grad()
    loss = (eps_prediction(model, sched.add_noise(x0[:1], noise, t), t, torch.tensor([2])) - noise).pow(2).mean()
    loss.backward()
    params = dict(model.named_parameters())
    for k in names:
        torch.testing.assert_close(one[k], params[k].grad.pow(2))


def test_ewc_total_mean_and_skipped(setup):
    model, sched, x0 = setup
    pre = {k: v.detach().clone() for k, v in model.state_dict().items()}
    fisher = diagonal_fisher(model, sched, x0, null_class=8, seed=0)
    names = ["proj_out_2.bias", "pos_embed.proj.weight", "lora_A.weight"]
    assert ewc(fisher, pre, pre, names[:2])["total"] == 0.0
    tuned = {k: v.clone() for k, v in pre.items()}
    tuned["proj_out_2.bias"] += 0.1
    out = ewc(fisher, tuned, pre, names)
    want = float((fisher["proj_out_2.bias"].double() * 0.01).sum())
    n = pre["proj_out_2.bias"].numel() + pre["pos_embed.proj.weight"].numel()
    assert out["total"] == pytest.approx(want, rel=1e-6)
    assert out["mean"] == pytest.approx(want / n, rel=1e-6) and out["n_params"] == n
    assert out["skipped"] == ["lora_A.weight"]
    with pytest.raises(MetricInputError, match="none of the tunable"):
        ewc(fisher, tuned, pre, ["lora_A.weight"])
    with pytest.raises(MetricInputError, match="NaN"):
        diagonal_fisher(model, sched, x0 * float("nan"), null_class=8)


def test_evaluate_metric_table_and_other_extractors():
    from bench.errors import BenchError
    from bench.evaluate import METRICS, compute_metrics, extractors_needed
    from bench.features.base import Features
    from bench.spec import EvaluationSpec

    rng = np.random.default_rng(0)

    def feats(n, shift):
        return Features(rng.standard_normal((n, 8)) + shift, rng.standard_normal((n, 5)), rng.standard_normal((n, 6)))

    g, r = feats(120, 0.3), feats(150, 0.0)
    r.labels = np.arange(150) % 3
    names = ["fid", "kid", "is", "prc", "sfid", "rmd", "entropy", "memorization", "l2"]
    spec = EvaluationSpec(extractor="tiny", metrics=names, kid_subset_size=50, kid_subsets=4)
    out = compute_metrics(g, r, spec)
    assert set(out) == set(names) and out["fid"] > 0 and 0 <= out["prc"]["precision"] <= 1
    assert extractors_needed(["fid", "cfid", "cmmd", "fd_dinov2"], "inception") == [
        "inception", "clean-inception", "clip", "dinov2"]
    with pytest.raises(BenchError, match="needs clean-inception features"):
        compute_metrics(g, r, EvaluationSpec(extractor="inception", metrics=["cfid"]))
    assert compute_metrics(g, r, EvaluationSpec(extractor="inception", metrics=["cfid"]),
                           other={"clean-inception": (g, r)})["cfid"] == pytest.approx(out["fid"])
    with pytest.raises(BenchError, match="needs logits"):
        METRICS["is"](Features(g.features, None), r, spec)


def test_ewc_against_pretrained_one_call(setup):
    import copy

    from bench.metrics import ewc_against_pretrained

    model, sched, x0 = setup
    tuned = copy.deepcopy(model)
    with torch.no_grad():
        tuned.proj_out_2.bias.add_(0.1)
    names = [n for n, _ in tuned.named_parameters()]
    out = ewc_against_pretrained(model, tuned, names, sched, x0, null_class=8, num_samples=4, seed=0)
    fisher = diagonal_fisher(model, sched, x0, null_class=8, num_samples=4, seed=0)
    assert out["total"] == pytest.approx(float((fisher["proj_out_2.bias"].double() * 0.01).sum()), rel=1e-6)
    assert out["n_params"] == sum(p.numel() for p in model.parameters()) and out["fisher_samples"] == 4
    assert ewc_against_pretrained(model, tuned, ["lora_A.weight"], sched, x0, null_class=8) is None


def test_fisher_data_is_fixed_per_dataset_whatever_the_global_rng(tmp_path):
    """EWC's Fisher data: the pre-trained model's own samples with labels over the target's rows
    and the null class, the same bytes whatever the global RNG did before (so every method of a
    dataset is measured with the same Fisher); regenerated, not just cached, it is identical."""
    import shutil

    from bench.backbone import load_backbone
    from bench.families.class_transfer import ClassTransfer
    from bench.paths import cache_dir
    from bench.tasks import load_task
    from conftest import small_task_file

    task = load_task(str(small_task_file(tmp_path)), "tiny")
    family = ClassTransfer(task, "cub200")
    pretrained = load_backbone(task.spec.backbone)
    torch.manual_seed(1)
    x0, y, digest = family.fisher_set(pretrained)
    shutil.rmtree(cache_dir() / "fisher-data")
    torch.manual_seed(2)
    torch.rand(5)
    x0b, yb, digest_b = family.fisher_set(pretrained)
    assert digest == digest_b and torch.equal(x0, x0b) and torch.equal(y, yb)
    k = task.spec.datasets["cub200"].num_classes
    assert len(y) == 24 and set(y.tolist()) == set(range(k)) | {pretrained.null_class}
