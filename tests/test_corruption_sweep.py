"""corruption-sweep (family pretrain-corruption) and its methods: label corruption as declared,
CEP's perturbation, IP's target, the other regularisers, the sweep by a bare family parameter,
from-scratch backbones, the nearest-training-image metrics, and the whole study through the CLI
down to its leaderboard section."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml

from bench.backbone import adapter_class, noise_schedule
from bench.errors import BenchError
from bench.families.pretrain_corruption import PretrainCorruption, corrupt_labels
from bench.method import TrainContext
from bench.metrics import nn_memorization, nn_threshold, top_k_l2
from bench.registry import build_method
from bench.runner import expand_sweep
from bench.spec import BackboneSpec, TrainSpec
from bench.tasks import load_task
from bench.trainer import diffusion_loss
from conftest import bench_cli, pretraining_source, result_files, small_task_file

TASK = load_task("corruption-sweep", "tiny")


def family(eta: float, mode: str = "fixed", seed: int = 0) -> PretrainCorruption:
    task = TASK.with_overrides({"params.eta": eta, "params.corruption": mode})
    fam = PretrainCorruption(task, "source64")
    fam.load_data()
    torch.manual_seed(0)
    fam.bind(adapter_class("dit").from_scratch(task.spec.backbone))
    fam.start(seed)
    return fam


def binomial_bound(p: float, n: int, z: float = 4.0) -> float:
    return z * math.sqrt(p * (1 - p) / n)


def test_realised_corruption_fraction_matches_eta_within_a_binomial_bound():
    labels = np.arange(20_000) % 64
    for eta in (2.5, 5, 20):
        new, selected = corrupt_labels(labels, eta, np.random.default_rng([0, 1]))
        assert abs(selected.mean() - eta / 100) <= binomial_bound(eta / 100, len(labels))
        changed = (new != labels).mean()
        # A replacement drawn from the prior is the true class 1/64 of the time.
        assert abs(changed - selected.mean() * 63 / 64) <= binomial_bound(eta / 100, len(labels))
    fam = family(5)
    rec = fam.provenance()["corruption"]
    n = rec["num_pairs"]
    assert n == 3200 and abs(rec["selected_fraction"] - 0.05) <= binomial_bound(0.05, n)
    assert rec["changed_fraction"] <= rec["selected_fraction"] and rec["changed_fraction"] > 0.03
    assert (fam._labels.numpy() != fam.clean_labels).mean() == rec["changed_fraction"]
    assert family(0).provenance()["corruption"]["selected_fraction"] == 0.0


def _draws(fam: PretrainCorruption, steps: int = 150) -> dict[int, set[int]]:
    spec = TrainSpec(batch_size=64, steps=1, lr=1e-4, checkpoint_every=1, class_dropout=0.0)
    seen: dict[int, set[int]] = {}
    for step in range(steps):
        torch.manual_seed(step)
        batch = fam.draw_batch(spec)
        for i, y in zip(batch["index"].tolist(), batch["y"].tolist()):
            seen.setdefault(i, set()).add(y)
    return seen


def test_fixed_corruption_is_the_same_every_epoch_and_random_is_not():
    fixed = family(20, "fixed")
    seen = _draws(fixed)  # 150 x 64 draws: each of the 3200 pairs about three times (three "epochs")
    assert all(len(ys) == 1 for ys in seen.values())
    assert all(ys == {int(fixed._labels[i])} for i, ys in seen.items())
    assert sum(next(iter(ys)) != fixed.clean_labels[i] for i, ys in seen.items()) > 0.1 * len(seen)
    # Drawn once per (dataset, seed): the same seed gives the same label list, another seed another.
    sha = fixed.provenance()["corruption"]["labels_sha256"]
    assert family(20, "fixed", seed=0).provenance()["corruption"]["labels_sha256"] == sha
    assert family(20, "fixed", seed=1).provenance()["corruption"]["labels_sha256"] != sha

    rand = family(20, "random")
    seen = _draws(rand)
    assert sum(len(ys) > 1 for ys in seen.values()) > 0.2 * len(seen)  # redrawn: a pair changes label
    rec = rand.provenance()["corruption"]
    assert rec["draws"] == 150 * 64 and abs(rec["selected_fraction"] - 0.2) <= binomial_bound(0.2, rec["draws"])


def test_the_family_refuses_a_pretrained_backbone():
    with pytest.raises(BenchError, match="from_scratch"):
        PretrainCorruption.check(load_task("dit-transfer", "tiny"))
    with pytest.raises(ValueError, match="from_scratch"):
        BackboneSpec(kind="dit", from_scratch=True, weights="x.safetensors", config={"num_layers": 1})
    spec = BackboneSpec(kind="dit", from_scratch=True, config=TASK.spec.backbone.config, num_source_classes=64)
    torch.manual_seed(0)
    a = adapter_class("dit").from_scratch(spec).model.state_dict()
    torch.manual_seed(0)
    b = adapter_class("dit").from_scratch(spec).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the run's seed decides the initialisation


def test_a_bare_family_parameter_is_swept_as_its_params_path():
    points = expand_sweep(TASK, "clean", {"eta": [0, 2.5]})
    assert [p.task_overrides for p in points] == [{"params.eta": 0}, {"params.eta": 2.5}]
    assert [p.values for p in points] == [{"params.eta": 0}, {"params.eta": 2.5}]
    assert [TASK.with_overrides(p.task_overrides).spec.params["eta"] for p in points] == [0, 2.5]


def _ctx(seed: int = 0):
    torch.manual_seed(seed)
    backbone = adapter_class("dit").from_scratch(TASK.spec.backbone)
    return TrainContext(backbone=backbone, dataset=TASK.spec.datasets["source64"], num_timesteps=1000, batch_size=8)


def _embedder(ctx):
    (module,) = ctx.backbone.group("class_embedding")
    return module


@pytest.mark.parametrize("name", ["cep-u", "cep-g"])
def test_cep_delta_has_the_declared_distribution_and_scale_and_only_acts_in_training(name):
    ctx = _ctx()
    method = build_method(name)
    ctx.backbone.model = method.prepare(ctx.backbone.model, ctx)
    d = ctx.backbone.hidden_size
    scale = 1.0 / math.sqrt(d)  # gamma = 1
    n = 4096
    batch = {"x0": torch.zeros(n, 3, 16, 16), "y": torch.arange(n) % 64, "index": torch.arange(n)}
    batch = method.make_batch(batch, ctx)
    delta = batch["cep_delta"]  # a column of the batch: sharded with its rows under data parallelism
    assert delta.shape == (n, d)
    if name == "cep-u":
        assert delta.abs().max() <= scale and delta.abs().max() > 0.99 * scale
        assert abs(delta.var().item() / (scale**2 / 3) - 1) < 0.03  # U(-a, a) has variance a^2 / 3
    else:
        assert abs(delta.std().item() / scale - 1) < 0.02
        assert abs(((delta / scale).pow(4).mean() / 3).item() - 1) < 0.05  # Gaussian kurtosis 3
    assert abs(delta.mean().item()) < 4 * scale / math.sqrt(n * d)

    method.train_batch(batch, ctx)  # the rows trained on reach the hook
    emb, labels = _embedder(ctx), batch["y"]
    emb.eval()
    plain = emb(labels).detach()
    emb.train()
    assert torch.allclose(emb(labels), plain + delta, atol=1e-6)  # training: perturbed
    with torch.no_grad():
        assert torch.equal(emb(labels), plain)  # sampling (no grad): the plain embedding


def test_fixed_cep_keeps_one_delta_per_training_pair():
    ctx = _ctx()
    method = build_method("cep-u", {"mode": "fixed"})
    method.prepare(ctx.backbone.model, ctx)
    x0 = torch.zeros(4, 3, 16, 16)
    first = method.make_batch({"x0": x0, "y": torch.zeros(4, dtype=torch.long),
                               "index": torch.tensor([5, 9, 5, 11])}, ctx)["cep_delta"]
    torch.manual_seed(123)  # another step: the global RNG moved on
    second = method.make_batch({"x0": x0, "y": torch.zeros(4, dtype=torch.long),
                                "index": torch.tensor([11, 5, 7, 9])}, ctx)["cep_delta"]
    assert torch.equal(first[0], first[2]) and torch.equal(first[0], second[1])
    assert torch.equal(first[1], second[3]) and torch.equal(first[3], second[0])
    assert not torch.equal(first[0], first[1])
    with pytest.raises(BenchError, match="index"):
        method.make_batch({"x0": x0, "y": torch.zeros(4, dtype=torch.long)}, ctx)


class _Identity:
    """A backbone whose noise prediction is its input: the loss then reads x_t against the target."""

    cond_keys = ()

    def predict_with_variance(self, x, t, cond, model=None):
        return x, None


def test_ip_perturbs_the_input_noise_and_leaves_the_target_unchanged():
    method = build_method("ip")
    schedule = noise_schedule(TASK.spec.diffusion)
    x0 = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.full((16,), 500)
    torch.manual_seed(7)
    loss = diffusion_loss(_Identity(), schedule, {"x0": x0}, t,
                          input_noise=lambda noise: method.input_noise(noise, {"x0": x0}, None))
    torch.manual_seed(7)  # replay the draws: the noise, then IP's xi
    noise = torch.randn_like(x0)
    xi = torch.randn_like(x0)
    x_t = schedule.add_noise(x0, noise + 0.1 * xi, t)
    expected = (x_t - noise).pow(2).flatten(1).mean(1)  # target: the original noise
    assert torch.allclose(loss, expected)
    assert not torch.allclose(loss, (x_t - (noise + 0.1 * xi)).pow(2).flatten(1).mean(1))
    torch.manual_seed(7)
    plain = diffusion_loss(_Identity(), schedule, {"x0": x0}, t)
    assert not torch.allclose(plain, loss)  # without IP, x_t is built from the noise itself


def test_label_smoothing_mixes_the_table_in_training_and_leaves_the_null_label():
    ctx = _ctx()
    build_method("label-smoothing", {"eps": "0.2"}).prepare(ctx.backbone.model, ctx)
    emb = _embedder(ctx)
    labels = torch.tensor([0, 5, 64])  # 64: the null class
    table = next(emb.parameters()).detach()
    out = emb(labels)
    assert torch.allclose(out[:2], 0.8 * table[[0, 5]] + 0.2 * table[:64].mean(0), atol=1e-6)
    assert torch.equal(out[2], table[64])
    with torch.no_grad():
        assert torch.equal(emb(labels), table[labels])


def test_dropout_acts_in_training_only():
    ctx = _ctx()
    model = build_method("dropout", {"p": "0.3"}).prepare(ctx.backbone.model, ctx)
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert layers and all(m.p == 0.3 for m in layers)
    x, t, y = torch.randn(2, 3, 16, 16), torch.tensor([10, 900]), torch.tensor([1, 2])
    model.train()
    assert not torch.equal(ctx.backbone.predict(x, t, {"y": y}), ctx.backbone.predict(x, t, {"y": y}))
    model.eval()
    assert torch.equal(ctx.backbone.predict(x, t, {"y": y}), ctx.backbone.predict(x, t, {"y": y}))


def test_nearest_training_image_metrics():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(200, 16))
    assert nn_memorization(train[:50] * 3.0, train, 1e-6) == 1.0  # copies (any scale: unit features)
    assert nn_memorization(rng.normal(size=(50, 16)), train, 1e-6) == 0.0
    unit = train / np.linalg.norm(train, axis=1, keepdims=True)
    g = rng.normal(size=(20, 16))
    gu = g / np.linalg.norm(g, axis=1, keepdims=True)
    d = np.sort(np.linalg.norm(gu[:, None] - unit[None], axis=2), axis=1)
    assert top_k_l2(g, train, k=5) == pytest.approx(d[:, :5].mean(), rel=1e-6)
    held = rng.normal(size=(100, 16))
    hu = held / np.linalg.norm(held, axis=1, keepdims=True)
    nn = np.linalg.norm(hu[:, None] - unit[None], axis=2).min(1)
    assert nn_threshold(held, train, 0.1) == pytest.approx(np.quantile(nn, 0.1), rel=1e-6)


def test_the_sweep_runs_from_the_cli_and_reaches_the_leaderboard(tmp_path):
    """The issue's command, shrunk (small_task_file): two etas, one seed, every guidance scale."""
    # RMD fits a Gaussian per class on the reference split: keep a few images of every class there.
    task = small_task_file(tmp_path, "corruption-sweep", datasets={"imagenet1k": None, "source64": {
        "title": "source", "num_classes": 64, "synthetic": {"generator": "source-shapes", "num_train": 128,
                                                             "num_eval": 320, "seed": 1}}})
    # Under its own name on the task path, so the reports resolve its results against it (not stale).
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "cs-small.yaml").write_text(task.read_text().replace("name: corruption-sweep", "name: cs-small"))
    env = {"BENCH_TASKS_PATH": str(tmp_path / "tasks")}
    bench_cli("run", "--task", "cs-small", "--method", "clean", "--profile", "tiny", "--sweep", "eta=0,2.5",
              "--seeds", "0", check_rc=0, env_extra=env)
    files = result_files(tmp_path / "results")
    assert len(files) == 2 and {json.loads(f.read_text())["sweep"]["params.eta"] for f in files} == {0, 2.5}
    for f in files:
        r = json.loads(f.read_text())
        assert r["budget"]["steps"] == 6 and r["provenance"]["backbone_sha256"] == "scratch"
        grid = r["guidance"]["grid"]
        assert list(grid) == ["1.0", "1.5", "2.0", "3.0"]
        best = r["guidance"]["best"]
        assert r["metrics"] == grid[str(best)] and r["metrics"]["fid"] == min(g["fid"] for g in grid.values())
        assert {"fid", "sfid", "is", "prc", "rmd", "entropy", "mem_ratio", "top5_l2"} <= set(r["metrics"])
        assert set(r["tracking"]["curves"]) == {"fid", "is"}
        rec = r["provenance"]["corruption"]
        assert rec["eta_percent"] == r["sweep"]["params.eta"] and len(rec["labels_sha256"]) == 64
        assert (rec["selected_fraction"] > 0) == (rec["eta_percent"] > 0)
    # The same seed at eta 0 and 2.5 starts from the same initialisation and draws the same batches:
    # only the labels differ, so the two final models must differ.
    shas = {json.loads(f.read_text())["provenance"]["final_state_sha256"] for f in files}
    assert len(shas) == 2
    out = tmp_path / "LB.md"
    bench_cli("leaderboard", "--results", tmp_path / "results", "--out", out, "--tables-dir", tmp_path / "tables",
              "--no-html", check_rc=0, env_extra=env)
    text = out.read_text()
    assert "## Pre-training under label corruption (corruption-sweep)" in text
    assert "| clean | 0 | fixed |" in text and "| clean | 2.5 | fixed |" in text
    # one seed: no interval, no verdict pretended; and the task's declared precondition (the clean
    # model memorises) is shown and gates the verdicts
    assert "Precondition `clean-memorises`" in text
    assert "out of regime: precondition `clean-memorises`" in text and "(no interval; " in text
    csv = (tmp_path / "tables" / "cs-small-v1-tiny-corruption.csv").read_text()
    assert ",clean,,2.5,fixed,,6,3.0,fid," in csv  # the per-guidance grid is in the CSV


def test_downstream_tasks_start_from_a_pretraining_run(tmp_path):
    """`--backbone-from` one corruption-sweep run (a `dit`) for both downstream tasks: dit-transfer
    fine-tunes its final model and corruption-controlnet personalises it (the DiT filled from the
    source, the branch copied from it), each pinned by the source's recorded final state; the report
    reads both as transfers of the eta-5 source. A source that does not exist is one line, and
    nothing is written."""
    pre, source, sha = pretraining_source(tmp_path)
    down = small_task_file(tmp_path, "dit-transfer")
    bad = bench_cli("run", "--task", down, "--method", "full-ft", "--profile", "tiny", "--dataset", "food101",
                    "--seeds", "0", "--backbone-from", tmp_path / "results" / "nope.json")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1 and "cannot read" in bad.stderr
    assert result_files(tmp_path / "results") == [source]
    bench_cli("run", "--task", down, "--method", "full-ft", "--profile", "tiny", "--dataset", "food101", "--seeds", "0",
              "--backbone-from", source, check_rc=0)
    (result,) = [f for f in result_files(tmp_path / "results") if f != source]
    r = json.loads(result.read_text())
    assert r["provenance"]["backbone_sha256"] == sha
    assert r["task_overrides"]["backbone.from_run"] == {"result": str(source.relative_to(tmp_path / "results")),
                                                         "final_state_sha256": sha}
    ctl = small_task_file(tmp_path, "corruption-controlnet")
    bench_cli("run", "--task", ctl, "--method", "controlnet", "--profile", "tiny", "--dataset", "segmentation",
              "--seeds", "0", "--backbone-from", source, check_rc=0)
    (personal,) = [f for f in result_files(tmp_path / "results") if f not in (source, result)]
    p = json.loads(personal.read_text())
    assert p["provenance"]["backbone_sha256"] == sha and p["task_overrides"]["backbone.from_run"]["final_state_sha256"] == sha
    assert p["tracking"]["curves"]["mse"] and "fid" in p["metrics"]

    # The report reads both back (their folder labels are the ones their stored overrides give) as
    # transfers of the eta-5 source.
    from bench.families.pretrain_corruption.report import downstream, downstream_tables
    from bench.report.load import load_results

    rs = load_results(tmp_path / "results", tasks={t: (yaml.safe_load(f.read_text())["version"], ["tiny"]) for t, f in
                                                   (("corruption-sweep", pre), ("dit-transfer", down),
                                                    ("corruption-controlnet", ctl))})
    assert rs.problem_lines() == []
    (section,) = {x.section for x in rs.variants if x.data.family == "pretrain-corruption"}
    transfers = {t.method: settings for t, settings in downstream(rs, section).items()}
    assert set(transfers) == {"full-ft", "controlnet"}
    assert [(st.method, st.eta) for st in transfers["full-ft"]] == [("clean", 5.0)]
    assert list(transfers["full-ft"].values()) == [{"food101": {(0, 0): r["metrics"]["fid"]}}]
    assert list(transfers["controlnet"].values()) == [{"segmentation": {(0, 0): p["metrics"]["fid"]}}]
    tables = {t.header[2]: t for t in downstream_tables(rs)}
    assert set(tables) == {"food101", "segmentation"} and tables["food101"].rows[0][0] == "clean, η=5%"
    from bench.report.extras import extras_markdown

    assert "| --- | --- | ---: | ---: | ---: |" in extras_markdown([tables["food101"]])  # FIDs right-aligned

    # The personalised model: the source's DiT, and a branch copied from it (not the task's default).
    from bench.backbone import adapter_class, load_backbone
    from bench.backbone.from_run import check_source

    spec = BackboneSpec.model_validate({**load_task(str(ctl), "tiny").spec.backbone.model_dump(), "weights": None,
                                        "weights_sha256": None, "from_run": p["task_overrides"]["backbone.from_run"]})
    bb = load_backbone(spec)
    default = load_backbone(load_task("corruption-controlnet", "tiny").spec.backbone)
    ours, copy = bb.model.transformer_blocks[0].state_dict(), bb.model.controlnet.blocks[0].state_dict()
    assert all(torch.equal(v, ours[k]) for k, v in copy.items())
    assert not torch.equal(bb.model.transformer_blocks[0].attn1.to_q.weight,
                           default.model.transformer_blocks[0].attn1.to_q.weight)
    # a source of another architecture is refused (at plan time: the preflight runs this check)
    other = {**spec.model_dump(), "config": {**spec.config, "attention_head_dim": 16}}
    with pytest.raises(BenchError, match="another architecture"):
        check_source(BackboneSpec.model_validate(other), adapter_class(other["kind"]))
    # Without the source's checkpoints (a fresh clone of committed results), a complete downstream
    # run is still skipped; one that must train is one line, and writes nothing.
    import shutil

    from bench.runner import checkpoint_dir

    shutil.rmtree(checkpoint_dir(source))
    again = ("run", "--task", down, "--method", "full-ft", "--profile", "tiny", "--seeds", "0", "--backbone-from", source)
    assert "skip " in bench_cli(*again, "--dataset", "food101", check_rc=0).stdout
    bad = bench_cli(*again, "--dataset", "artbench10")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1 and "not in this cache" in bad.stderr
    assert len(result_files(tmp_path / "results")) == 3


def test_downstream_rows_average_datasets_per_seed_pair_and_pair_with_the_clean_source():
    from bench.families.pretrain_corruption.report import Setting, transfer_rows

    clean, slight = (Setting("clean", "", e, "fixed", "", 1000) for e in (0.0, 2.5))
    fid = {clean: {"a": {(0, 0): 40.0, (1, 0): 42.0, (2, 0): 41.0}, "b": {(0, 0): 60.0, (1, 0): 62.0, (2, 0): 61.0}},
           slight: {"a": {(0, 0): 38.0, (1, 0): 40.5, (2, 0): 39.0}, "b": {(0, 0): 59.0, (1, 0): 60.5, (2, 0): 60.0,
                                                                           (3, 0): 10.0}}}
    ref, row = transfer_rows(fid, ["a", "b"])
    assert ref.setting == clean and ref.diff is None
    # (3, 0) has only dataset b: not in the mean; the mean per pair is over both datasets
    assert row.mean == {(0, 0): 48.5, (1, 0): 50.5, (2, 0): 49.5}
    assert row.diff.n == 3 and row.diff.mean == pytest.approx(-1.5)
    assert row.p_holm is not None and row.per_dataset["b"].n == 4


def test_datasets_still_being_run_are_left_out_of_the_mean():
    from bench.families.pretrain_corruption.report import Setting, averaged_datasets, transfer_rows

    clean, slight = (Setting("clean", "", e, "fixed", "", 1000) for e in (0.0, 2.5))
    seeds3 = {(0, 0): 40.0, (1, 0): 44.0, (2, 0): 42.0}
    fid = {st: {"a": dict(seeds3), "b": {k: v + 20 for k, v in seeds3.items()}, "c": {(0, 0): 90.0}}
           for st in (clean, slight)}
    assert averaged_datasets(fid) == ["a", "b"]  # c has source seed 0 only so far
    ref, row = transfer_rows(fid, averaged_datasets(fid))
    assert row.diff.n == 3 and row.mean == {(0, 0): 50.0, (1, 0): 54.0, (2, 0): 52.0}
    fid[slight]["a"].pop((2, 0))
    assert averaged_datasets(fid) == ["b"]
    for by_ds in fid.values():
        by_ds["b"].pop((1, 0))
    assert averaged_datasets(fid) == ["a", "b", "c"]  # none complete: all, over the pairs they share


def test_the_dose_response_is_one_least_squares_slope_per_seed():
    from bench.families.pretrain_corruption.report import Setting, fid_slope

    def g(etas, slope_of_seed):
        return {Setting("clean", "", e, "fixed", "", 1000): {s: {"metrics": {"fid": 40 + slope_of_seed(s) * e + s}}
                                                            for s in (0, 1, 2)} for e in etas}

    iv, etas = fid_slope(g((0, 5, 10, 20), lambda s: 0.2 + 0.01 * s))
    assert etas == [0, 5, 10, 20] and iv.n == 3 and iv.mean == pytest.approx(0.21) and iv.low > 0
    assert fid_slope(g((0, 5), lambda s: 0.2)) is None  # two etas make no trend


def test_committed_tiny_results_record_what_the_study_reads():
    """Every committed corruption-sweep result: its realised corruption matches its eta (binomial
    bound over the 3200 pairs, or over the draws for random corruption), its reported metrics are
    the grid point with the lowest FID; every committed downstream run names a committed source by
    the final state that source records. Reads JSON only."""
    from conftest import ROOT

    root = ROOT / "results"
    runs = [json.loads(p.read_text()) for p in sorted((root / "corruption-sweep@v1" / "tiny").rglob("seed*.json"))]
    assert {r["method"] for r in runs} >= {"clean", "cep-u", "cep-g", "ip", "dropout", "label-smoothing"}
    for r in runs:
        rec, eta = r["provenance"]["corruption"], r["task_overrides"].get("params.eta", 0) / 100
        n = rec["draws"] if rec["mode"] == "random" else rec["num_pairs"]
        assert rec["mode"] == r["task_overrides"].get("params.corruption", "fixed")
        assert abs(rec["selected_fraction"] - eta) <= 4 * math.sqrt(eta * (1 - eta) / n) + 1e-12
        grid = r["guidance"]["grid"]
        assert r["metrics"] == grid[str(r["guidance"]["best"])] == min(grid.values(), key=lambda m: m["fid"])
    assert any(r["provenance"]["corruption"]["mode"] == "random" for r in runs)
    sources = {str(p.relative_to(root)): json.loads(p.read_text())["provenance"]["final_state_sha256"]
               for p in (root / "corruption-sweep@v1").rglob("seed*.json")}
    clean = {s for s in sources if "/clean/params.eta=" in s}
    assert len(clean) == 21  # 7 etas x 3 source seeds
    covered = {}  # (task, dataset or condition) -> the sources run downstream, one downstream seed
    for task in ("dit-transfer@v2", "corruption-controlnet@v1"):
        for p in (root / task).glob("tiny/*/backbone.from_run=*/*/seed*.json"):
            r = json.loads(p.read_text())
            pin = r["task_overrides"]["backbone.from_run"]
            assert sources[pin["result"]] == pin["final_state_sha256"] and r["seed"] == 0
            covered.setdefault((task, r["dataset"]), set()).add(pin["result"])
    # every clean source on food101, artbench10 and both ControlNet conditions; on the other six
    # stand-ins, the same sources on all six (a source is run on every one of them or on none)
    for key in (("dit-transfer@v2", "food101"), ("dit-transfer@v2", "artbench10"),
                ("corruption-controlnet@v1", "edge"), ("corruption-controlnet@v1", "segmentation")):
        assert covered[key] == clean
    rest = [covered.get(("dit-transfer@v2", d), set())
            for d in ("cub200", "caltech101", "flowers102", "stanford-cars", "sun397", "df20m")]
    assert all(r == rest[0] for r in rest) and rest[0] <= clean


class _Run:
    """A result as the report reads it (the attributes `downstream` and `setting_of` use)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def model_dump(self, mode="json"):
        return {"metrics": self.metrics}


def _fabricated_transfer(root, source_fid, down_fid, mse):
    """A ResultSet of clean sources at eta 0 and 2.5 (source seeds 0-2) and a ControlNet fine-tuned
    from each on edge and segmentation (downstream seed 0): source_fid(eta, s), down_fid(eta, s,
    dataset), mse(eta, s, dataset) give their metrics."""
    from types import SimpleNamespace

    from bench.families.pretrain_corruption.report import FROM_RUN
    from bench.report.load import Loaded, ResultSet

    common = {"task_version": 1, "profile": "tiny", "family": "pretrain-corruption"}
    runs = []
    for eta in (0.0, 2.5):
        for s in (0, 1, 2):
            rel = f"corruption-sweep@v1/tiny/clean/eta{eta}/source64/seed{s}.json"
            sha = f"{eta}-{s}"
            runs.append(Loaded(root / rel, _Run(
                **common, task="corruption-sweep", method="clean", method_config={}, budget={"steps": 10},
                training=SimpleNamespace(steps=10), resolved_spec={"spec": {"params": {}}},
                task_overrides={"params.eta": eta} if eta else {}, provenance={"final_state_sha256": sha},
                metrics={"fid": source_fid(eta, s)}, seed=s, dataset="source64")))
            for d in ("edge", "segmentation"):
                runs.append(Loaded(root / f"corruption-controlnet@v1/tiny/controlnet/{sha}/{d}/seed0.json", _Run(
                    **common, task="corruption-controlnet", method="controlnet", method_config={}, budget={"steps": 5},
                    task_overrides={FROM_RUN: {"result": rel, "final_state_sha256": sha}}, provenance={},
                    metrics={"fid": down_fid(eta, s, d), "condition_mse": mse(eta, s, d)}, seed=0, dataset=d)))
    return ResultSet(root, variants=runs)


# Exact binary fractions, so that a difference meant to be 0 is 0.
_SHIFT = {0: 1.0, 1: 1.5, 2: 1.25}  # by source seed: +1.25 ± 0.62 over the three, excludes 0
_MSE_NOISE = {0: 0.001, 1: -0.001, 2: 0.0005}  # contains 0


def _notes(rs):
    from bench.families.pretrain_corruption.report import downstream_lines

    section = ("corruption-sweep", 1, "tiny")
    return [line for line in downstream_lines(rs, section) if "beside the source's own change" in line]


def test_a_downstream_shift_that_is_the_source_shift_inherits_the_source_quality(tmp_path):
    """The downstream FID of the eta-2.5 sources is the clean sources' plus exactly each source's
    own FID shift, and condition following does not change: the difference minus the source's own
    change is 0, and the note says the downstream difference inherits the source's quality; the
    table and its CSV carry the same numbers."""
    from bench.families.pretrain_corruption.report import downstream_tables, transfer_source_checks

    def src(eta, s):
        return 50.0 + s + (_SHIFT[s] if eta else 0.0)

    def down(eta, s, d):
        return (30.0 if d == "edge" else 20.0) + 2 * s + (_SHIFT[s] if eta else 0.0)

    def mse(eta, s, d):
        return 0.125 + (_MSE_NOISE[s] if eta else 0.0)

    rs = _fabricated_transfer(tmp_path, src, down, mse)
    (checks,) = transfer_source_checks(rs, ("corruption-sweep", 1, "tiny")).values()
    (c,) = checks.values()
    assert c.downstream == pytest.approx(_SHIFT) and c.source == pytest.approx(_SHIFT)
    assert c.excess == {0: 0.0, 1: 0.0, 2: 0.0}
    assert c.interval("excess").mean == 0.0 and c.interval("downstream").low > 0
    assert c.conditions["condition_mse"][0] == ("edge", "segmentation")
    assert c.conditions["condition_mse"][1] == pytest.approx(_MSE_NOISE)
    (note,) = _notes(rs)
    assert "source clean, η=2.5% against the clean η=0 source" in note and "outside the Bonferroni family" in note
    assert "downstream ΔFID (mean over edge, segmentation) +1.25 ± 0.62 (n=3) *" in note
    assert "the source's own ΔFID (its FID on its own data) +1.25 ± 0.62 (n=3) *" in note
    assert "downstream minus the source's own change +0.00 ± 0.00 (n=3) (+0.00/+0.00/+0.00)" in note
    assert "Δ condition MSE (mean over edge, segmentation) +0.0002" in note
    assert "inherits the source's quality" in note

    (table,) = downstream_tables(rs)
    assert table.header[-3:] == ["Source's own ΔFID vs clean η=0 source (paired by source seed)",
                                 "Downstream ΔFID minus the source's own (per source seed)",
                                 "Δ condition MSE vs clean η=0 source (per source seed)"]
    ref_row, row = table.rows
    assert ref_row[-3:] == ["—", "—", "—"]
    assert row[-3:-1] == ["+1.25 ± 0.62 (n=3) *", "+0.00 ± 0.00 (n=3)"] and row[-1].startswith("+0.0002 ± ")
    (mean,) = [dict(zip(table.csv_header, r)) for r in table.csv_rows if r[13] == "mean" and r[11] == 2.5]
    assert float(mean["source_fid_diff_mean"]) == pytest.approx(1.25) and mean["source_fid_diff_n_source_seeds"] == 3
    assert float(mean["fid_diff_minus_source_mean"]) == 0.0
    assert float(mean["condition_mse_diff_ci95_low"]) < 0 < float(mean["condition_mse_diff_ci95_high"])


def test_a_downstream_shift_beyond_the_source_shift_or_with_condition_following_changed_does_not(tmp_path):
    """The same downstream shift from sources whose own FID does not move: the whole shift is the
    downstream's own (minus the source's change = the shift, excludes 0), and the note says so;
    and a shift that is the source's but with the condition MSE rising at every source seed is not
    read as inherited either."""
    from bench.families.pretrain_corruption.report import transfer_source_checks

    def down(eta, s, d):
        return 30.0 + s + (_SHIFT[s] if eta else 0.0)

    rs = _fabricated_transfer(tmp_path, lambda eta, s: 50.0 + s, down, lambda eta, s, d: 0.125)
    (checks,) = transfer_source_checks(rs, ("corruption-sweep", 1, "tiny")).values()
    (c,) = checks.values()
    assert c.source == {0: 0.0, 1: 0.0, 2: 0.0} and c.excess == pytest.approx(_SHIFT)
    (note,) = _notes(rs)
    assert "downstream minus the source's own change +1.25 ± 0.62 (n=3) *" in note
    assert "inherits the source's quality" not in note
    assert "the downstream change is larger than the source's own" in note

    rs = _fabricated_transfer(tmp_path, lambda eta, s: 50.0 + s + (_SHIFT[s] if eta else 0.0), down,
                              lambda eta, s, d: 0.125 + ({0: 0.01, 1: 0.0125, 2: 0.015}[s] if eta else 0.0))
    (note,) = _notes(rs)
    assert "downstream minus the source's own change +0.00 ± 0.00 (n=3)" in note
    assert "inherits the source's quality" not in note and "condition following changes too" in note
