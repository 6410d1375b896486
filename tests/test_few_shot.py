"""fewshot-corruption (family few-shot): the subjects, the rare token, the per-method protocol, the
DreamBooth prior-preservation batch and loss, Bayesian LoRA by composition, the CLI down to the
leaderboard with whole fidelity curves and the detected stage, and the paper profile's refusal."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from bench.backbone import load_backbone
from bench.data.layouts import WORDS, generate_layouts
from bench.errors import BenchError
from bench.families.few_shot.subjects import LOOKS, render_subject
from bench.families.few_shot import FewShot
from bench.method import TrainContext
from bench.registry import build_method
from bench.tasks import load_task
from bench.tracking_rules import Dip
from conftest import ROOT, bench_cli, result_files

TASK = load_task("fewshot-corruption", "tiny")


def small_task(tmp_path):
    """The tiny profile at a few steps per image, 3 tracked points, 2 prompts x 2 images."""
    raw = yaml.safe_load((ROOT / "tasks" / "fewshot-corruption.yaml").read_text())
    tiny = raw["profiles"]["tiny"]
    tiny["sampling"] = {**tiny["sampling"], "steps": 3}
    p = tiny["params"]
    p.update(track_points=3, images_per_prompt=2, track_prompts=1, prompts=p["prompts"][:2],
             protocols={"default": {"steps_per_image": 2, "lr": 1e-4}, "lora": {"steps_per_image": 3, "lr": 1e-3}},
             class_images={**p["class_images"], "per_image": 2, "steps": 3})
    path = tmp_path / "fewshot-small.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def family(task=TASK, dataset="checker-ball", n=2):
    task = task.with_overrides({"params.num_images": n})
    fam = FewShot(task, dataset)
    fam.load_data()
    torch.manual_seed(0)
    fam.bind(load_backbone(task.spec.backbone))
    return fam


def test_subjects_are_one_object_each_in_new_scenes_and_unlike_the_source():
    a = render_subject("checker", 6, 0, 32)
    assert a.shape == (6, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, render_subject("checker", 6, 0, 32))  # deterministic
    assert not np.array_equal(a[0], a[1])  # a new scene per image
    source = generate_layouts(64, np.random.default_rng(0), 32).images
    # The patterns put strong pixel-to-pixel contrast inside the object, which flat source objects lack.
    contrast = lambda x: np.abs(np.diff(x.astype(float), axis=2)).mean()  # noqa: E731
    assert all(contrast(render_subject(look, 6, 0, 32)) > 1.4 * contrast(source) for look in LOOKS)


def test_the_rare_token_is_a_new_word_with_an_untrained_embedding():
    fam = family()
    ids = fam.instance_ids.tolist()
    rare = 4 + len(WORDS)  # after <pad> <bos> <eos> <unk> and every source word
    assert rare in ids and fam.prompt(TASK.spec.params["instance_prompt"]) == "a sks ball"
    assert fam.clip_text(TASK.spec.params["prompts"][0]) == "a ball on grass under a blue sky"
    assert fam.backbone.tokenize(["a red ball"]).max().item() < rare  # source ids are unchanged


def test_each_base_method_trains_on_its_own_protocol_and_tracking_scales_with_n():
    fam = family(n=6)
    p = TASK.spec.params["protocols"]
    db, lora = fam.train_spec(build_method("dreambooth")), fam.train_spec(build_method("bnn+lora", family="few-shot"))
    assert (db.steps, db.lr) == (6 * p["default"]["steps_per_image"], p["default"]["lr"])
    assert (lora.steps, lora.lr) == (6 * p["lora"]["steps_per_image"], p["lora"]["lr"])
    points = TASK.spec.params["track_points"]
    assert fam.tracking_spec(db.steps).every_steps * points >= db.steps > fam.tracking_spec(db.steps).every_steps * (points - 1)


def test_dreambooth_appends_one_class_image_per_instance_and_weights_its_loss():
    fam = family(n=1)
    method = build_method("dreambooth", {"prior_weight": "0.5"})
    ctx = TrainContext(backbone=fam.backbone, dataset=fam.dataset, num_timesteps=1000, batch_size=1,
                       extra_data=fam.extra)
    torch.manual_seed(0)
    batch = method.make_batch(fam.draw_batch(TASK.spec.train), ctx)
    assert batch["prior"].tolist() == [False, True] and batch["x0"].shape[0] == 2
    class_ids = fam.backbone.tokenize(["a ball"])[0]
    assert torch.equal(batch["input_ids"][1], class_ids) and torch.equal(batch["input_ids"][0], fam.instance_ids)
    assert len(fam.extra("class_images")["x0"]) == TASK.spec.params["class_images"]["per_image"]
    loss = method.loss(torch.tensor([2.0, 4.0]), batch, ctx)
    assert loss.item() == 2.0 + 0.5 * 4.0


def test_bnn_with_lora_makes_the_up_blocks_lora_up_projections_bayesian():
    fam = family(n=1)
    ctx = TrainContext(backbone=fam.backbone, dataset=fam.dataset, num_timesteps=1000, batch_size=1)
    method = build_method("bnn+lora", family="few-shot")
    torch.manual_seed(0)
    model = method.prepare(fam.backbone.model, ctx)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(".lora_" in n for n in names)
    bayes = [n for n in names if n.endswith(("_mu", "_sigma"))]
    assert bayes and all(".up_blocks." in n and ".lora_B." in n for n in bayes)
    assert any(".down_blocks." in n and ".lora_B." in n and n.endswith(".weight") for n in names)  # deterministic there
    # At initialisation the KL to N(0, prior^2) is zero, so the penalty adds nothing.
    method = build_method("bnn+lora", {"bnn.kl_weight": "1.0"}, family="few-shot")
    fresh = family(n=1)
    model = method.prepare(fresh.backbone.model, ctx)
    assert abs(method.penalty(model, ctx).item()) < 1e-9


def test_bnn_composes_with_dreambooths_loss_through_its_penalty():
    method = build_method("bnn+dreambooth", {"bnn.kl_weight": "0.5"}, family="few-shot")
    assert method.needs_data == ("class_images",) and method.supports("few-shot")
    fam = family(n=1)
    ctx = TrainContext(backbone=fam.backbone, dataset=fam.dataset, num_timesteps=1000, batch_size=1)
    model = method.prepare(fam.backbone.model, ctx)
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if n.endswith("weight_mu")).add_(0.05)
    assert method.penalty(model, ctx).item() > 0  # the KL moves once the mean leaves the prior
    assert not any(p.requires_grad for p in model.text_encoder.parameters())


def test_cli_run_records_whole_curves_the_stage_and_reaches_the_leaderboard(tmp_path, monkeypatch):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "fs-small.yaml").write_text(
        small_task(tmp_path).read_text().replace("name: fewshot-corruption", "name: fs-small"))
    env = {"BENCH_TASKS_PATH": str(tmp_path / "tasks")}
    out = tmp_path / "results"
    bench_cli("run", "--task", "fs-small", "--method", "bnn+dreambooth", "--profile", "tiny", "--seeds", "0",
              "--dataset", "checker-ball", "--sweep", "num_images=1", "--results-dir", out, check_rc=0, env_extra=env)
    (path,) = result_files(out)
    r = json.loads(path.read_text())
    assert r["sweep"] == {"params.num_images": 1} and r["training"]["steps"] == 2
    curves = r["tracking"]["curves"]
    assert set(curves) == {"dino", "clip_i", "clip_t", "lpips", "clip_iqa"}
    assert [s for s, _ in curves["dino"]] == [0, 1, 2]  # every point of the run, step 0 included
    (event,) = r["tracking"]["events"]
    assert event == Dip(metric="dino", margin=event["margin"]).detect(curves["dino"])
    assert set(r["metrics"]) == {"dino", "clip_i", "clip_t", "lpips", "clip_iqa"}
    assert r["subject"]["instance_prompt"] == "a sks ball" and r["provenance"]["class_images"]["n"] == 2
    board = tmp_path / "LEADERBOARD.md"
    bench_cli("leaderboard", "--results", out, "--out", board, "--tables-dir", tmp_path / "tables", "--no-html",
              check_rc=0, env_extra=env)
    text = board.read_text()
    assert "## Few-shot corruption stage" in text and "| bnn+dreambooth | 1 | 1 |" in text
    from bench.report.figures import plan_figures
    from bench.report.load import load_results

    monkeypatch.setenv("BENCH_TASKS_PATH", env["BENCH_TASKS_PATH"])
    specs, _ = plan_figures(load_results(out))  # in-process: the figures' plan, each one drawn
    assert {s.name for s in specs} == {f"fs-small-v1-tiny-fewshot-{k}" for k in ("dino", "final", "samples")}
    for spec in specs:
        assert spec.draw().axes


def test_paper_profile_offline_names_everything_missing_in_one_line(tmp_path):
    bad = bench_cli("run", "--task", "fewshot-corruption", "--method", "dreambooth", "--profile", "paper",
                    "--seeds", "0", env_extra={"HF_HOME": str(tmp_path / "hf")})
    assert bad.returncode != 0
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1, bad.stderr
    for what in ("stable-diffusion-v1-5", "google/dreambooth", "dataset/backpack"):
        assert what in lines[0], what
    assert result_files(tmp_path / "results") == []


def test_committed_results_cover_every_method_n_subject_and_seed_and_their_stage_follows_from_the_rule():
    files = sorted((ROOT / "results").glob("fewshot-corruption@v*/tiny/**/seed*.json"))
    margin = TASK.spec.tracking.rules[0].margin
    got = set()
    for path in files:
        r = json.loads(path.read_text())
        (event,) = r["tracking"]["events"]
        assert event == Dip(metric="dino", margin=margin).detect(r["tracking"]["curves"]["dino"]), path
        if set(r["sweep"]) == {"params.num_images"}:
            got.add((r["method"], r["subject"]["num_images"], r["dataset"], r["seed"]))
    methods = ["dreambooth", "bnn+dreambooth", "bnn-norm+dreambooth", "lora", "bnn+lora"]
    assert got == {(m, n, s, k) for m in methods for n in (1, 2, 6) for s in TASK.spec.datasets for k in (0, 1, 2)}


def test_a_hub_subject_may_be_a_local_folder_and_only_its_first_n_images_are_read(tmp_path):
    from PIL import Image

    from bench.data.hub_datasets import center_crop_resize
    from bench.families.few_shot import SubjectSpec, _hub_subject
    from bench.spec import DatasetSpec

    folder = tmp_path / "dreambooth" / "dataset" / "ball"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (20, 14, 3), dtype=np.uint8)).save(folder / f"{4 - i:02d}.png")
    ds = DatasetSpec.model_validate({"title": "ball", "hub": {"path": str(tmp_path / "dreambooth"),
                                                              "label_column": None}})
    images = _hub_subject(ds, SubjectSpec(class_word="ball", folder="ball"), 2, 8)
    expected = [center_crop_resize(Image.open(folder / f"{i:02d}.png"), 8) for i in (0, 1)]  # sorted by name
    assert images.shape == (2, 8, 8, 3) and all(np.array_equal(a, b) for a, b in zip(images, expected))
    with pytest.raises(BenchError, match="does not exist"):
        _hub_subject(ds, SubjectSpec(class_word="dog", folder="dog"), 1)
    with pytest.raises(BenchError, match="has 5 images"):
        _hub_subject(ds, SubjectSpec(class_word="ball", folder="ball"), 6)
