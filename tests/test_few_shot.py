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
from baselines.bnn import BayesianLinear
from bench.errors import BenchError
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


def test_bnn_with_lora_makes_every_lora_up_projection_bayesian_at_the_scripts_rank():
    fam = family(n=1)
    ctx = TrainContext(backbone=fam.backbone, dataset=fam.dataset, num_timesteps=1000, batch_size=1)
    method = build_method("bnn+lora", family="few-shot")
    lora = method.parts[1].config
    assert lora.rank == 4 and set(lora.targets) == {"to_q", "to_k", "to_v", "to_out.0"}  # the official scripts
    torch.manual_seed(0)
    model = method.prepare(fam.backbone.model, ctx)
    ups = {n.rsplit(".lora_B", 1)[0] for n, m in model.named_modules() if ".lora_B." in f"{n}."}
    assert ups and {n.rsplit(".lora_B", 1)[0] for n, m in model.named_modules() if isinstance(m, BayesianLinear)} == ups
    # every attention layer of the blocks, self- and cross-attention, q/k/v/out, down/mid/up
    attention = [name for name, _ in fam.backbone.module_group("attention")]
    want = {f"{a}.{t}" for a in attention for t in ("to_q", "to_k", "to_v", "to_out.0")}
    assert ups == want and any(".attn2." in n for n in ups) and any(".down_blocks." in n for n in ups)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(".lora_" in n for n in names)
    assert all(".lora_B." in n for n in names if n.endswith(("_mu", "_sigma")))
    assert not any(".lora_A." in n and n.endswith(("_mu", "_sigma")) for n in names)  # down stays deterministic
    # At initialisation the KL to N(0, prior^2) is zero, so the penalty adds nothing.
    method = build_method("bnn+lora", {"bnn.kl_weight": "1.0"}, family="few-shot")
    fresh = family(n=1)
    model = method.prepare(fresh.backbone.model, ctx)
    assert abs(method.penalty(model, ctx).item()) < 1e-6


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
    diag = r["training"]["method_diagnostics"]["bnn"]  # the report's check that BNN did something
    assert diag["sigma_final"]["elements"] > 0 and diag["sigma_changed"] and diag["loss_change"] != 0
    assert r["resolved_spec"]["spec"]["train"]["max_grad_norm"] == 1.0
    board = tmp_path / "LEADERBOARD.md"
    bench_cli("leaderboard", "--results", out, "--out", board, "--tables-dir", tmp_path / "tables", "--no-html",
              check_rc=0, env_extra=env)
    text = board.read_text()
    assert "## Few-shot corruption stage" in text and "| bnn+dreambooth | 1 | 1 |" in text
    assert "bnn+dreambooth: BNN check over 1 of 1 runs: sigma moved in 1" in text
    assert "no calibration committed for this task version" in text  # v2 has none: said, not a crash
    from bench.report.figures import plan_figures
    from bench.report.load import load_results

    monkeypatch.setenv("BENCH_TASKS_PATH", env["BENCH_TASKS_PATH"])
    specs, _ = plan_figures(load_results(out))  # in-process: the figures' plan, each one drawn
    assert {s.name for s in specs} == {f"fs-small-v2-tiny-fewshot-{k}" for k in ("dino", "final", "samples")}
    for spec in specs:
        assert spec.draw().axes


def test_paper_profile_offline_plans_every_n_and_names_only_the_missing_downloads_in_one_line(tmp_path):
    bad = bench_cli("run", "--task", "fewshot-corruption", "--method", "bnn+lora", "--profile", "paper",
                    "--seeds", "0", env_extra={"HF_HOME": str(tmp_path / "hf")})
    assert bad.returncode != 0
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1, bad.stderr
    for what in ("stable-diffusion-v1-5", "google/dreambooth", "dataset/backpack", "dataset/dog2", "dataset/can"):
        assert what in lines[0], what
    assert result_files(tmp_path / "results") == []
    # Every N of the sweep passes the plan-time checks up to the downloads: the declared image
    # counts allow N = 6 on each subject (google/dreambooth's `dog`, with 5, would refuse it).
    paper = load_task("fewshot-corruption", "paper")
    assert paper.spec.sweep.values == [1, 2, 6]
    for n in paper.spec.sweep.values:
        with pytest.raises(BenchError) as err:
            FewShot.check(paper.with_overrides({"params.num_images": n}))
        assert "not in the local cache" in str(err.value) and "images of subject" not in str(err.value)
    with pytest.raises(BenchError, match="num_images 6 > the 5 images of subject 'dog2'"):
        FewShot.check(paper.with_overrides({"params.num_images": 6, "params.subjects.dog2.images": 5}))


def test_paper_subjects_get_their_officials_prompt_list_and_clip_t_keeps_the_rare_token():
    paper = load_task("fewshot-corruption", "paper")
    p = paper.spec.params
    assert len(p["prompts"]) == len(p["live_prompts"]) == 25 and p["prompts"] != p["live_prompts"]
    dog, can = FewShot(paper, "dog2"), FewShot(paper, "can")
    assert dog.prompts == p["live_prompts"] and can.prompts == p["prompts"]
    assert "wearing a santa hat" in dog.prompts[11] and "santa" not in " ".join(can.prompts)
    assert dog.clip_text(dog.prompts[0]) == "a qwe dog in the jungle"  # the official metadata keeps it
    tiny = FewShot(TASK, "checker-ball")
    assert tiny.clip_text(tiny.prompts[0]) == "a ball on grass under a blue sky"  # the tiny CLIP has no "sks"


def test_subject_region_scores_the_subject_not_the_background():
    """Held-out renders: the subject in other scenes scores above another subject (or none) in the
    very scenes of the training images, with region scoring; whole images fail that."""
    from bench.families.few_shot.fidelity import get_fidelity
    from bench.families.few_shot.subjects import _draw, _scene, render_scenes, subject_boxes

    fid = get_fidelity("tiny")
    looks = list(LOOKS)
    region, whole = {"same": [], "other": [], "empty": []}, {"same": [], "other": [], "empty": []}
    for look in looks:
        rng = np.random.default_rng([41, 1000])
        masks = np.stack([_draw(look, _scene(rng), np.random.default_rng(0), 32)[1] for _ in range(6)])
        scenes = render_scenes([look, *[x for x in looks if x != look], None], 6, 41, 32)  # the same 6 scenes
        elsewhere = torch.from_numpy(render_scenes([look], 6, 42, 32)[0])  # the subject, 6 other scenes
        train, boxes = torch.from_numpy(scenes[0]), torch.from_numpy(subject_boxes(masks))
        for k in range(6):  # pair by pair: training image k against a generation
            ref, box = train[k:k + 1], boxes[k:k + 1]
            for key, gen in [("same", elsewhere[k:k + 1]), ("other", torch.from_numpy(scenes[1][k:k + 1])),
                             ("other", torch.from_numpy(scenes[2][k:k + 1])), ("empty", torch.from_numpy(scenes[3][k:k + 1]))]:
                two = gen.repeat(2, 1, 1, 1)
                region[key].append(fid.measure(two, ["a ball"], 2, ref, box)["dino"])
                whole[key].append(fid.measure(two, ["a ball"], 2, ref)["dino"])
    mean = {k: float(np.mean(v)) for k, v in region.items()}
    assert mean["same"] > mean["other"] + 0.2 and mean["same"] > mean["empty"] + 0.2, mean
    assert float(np.mean(whole["empty"])) > float(np.mean(whole["same"])), whole  # what whole images score
    fam = family(n=2)
    assert fam.regions is not None and fam.regions.shape == (2, 4)  # the tiny profile scores regions


def test_committed_results_cover_every_method_n_subject_and_seed_and_their_stage_follows_from_the_rule():
    """The committed tiny results of the CURRENT task version (v1's are in git history; these come
    from scripts/reproduce_tiny_fewshot.sh): the headline grid, the relative-sigma sweep, and the
    leaderboard's line for each swept value."""
    files = sorted((ROOT / "results").glob(f"{TASK.key}/tiny/**/seed*.json"))
    assert files, f"no committed {TASK.key} tiny results"
    swept = set()
    margin = TASK.spec.tracking.rules[0].margin
    got = set()
    for path in files:
        r = json.loads(path.read_text())
        (event,) = r["tracking"]["events"]
        assert event == Dip(metric="dino", margin=margin).detect(r["tracking"]["curves"]["dino"]), path
        if set(r["sweep"]) == {"params.num_images"}:
            got.add((r["method"], r["subject"]["num_images"], r["dataset"], r["seed"]))
        elif "bnn.sigma_init" in r["sweep"]:
            assert r["method_config"]["bnn"]["sigma_relative"] is True, path
            swept.add((r["method"], float(r["sweep"]["bnn.sigma_init"]), r["dataset"], r["seed"]))
    assert swept == {("bnn+dreambooth", v, s, k) for v in (0.3, 1.0) for s in TASK.spec.datasets for k in (0, 1, 2)}
    board = (ROOT / "LEADERBOARD.md").read_text()
    for v in ("0.3", "1"):
        assert f"bnn+dreambooth at N = 1 with sigma_init = {v} against the study's run" in board
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


def _fake_bnn(method: str, seed: int, loss: float, change: float, sweep: dict | None = None):
    """A result as the BNN check reads it: its section, method and training diagnostics."""
    from types import SimpleNamespace

    part = method.split("+")[0]
    sweep = {"params.num_images": 1, **(sweep or {})}
    data = {"family": "few-shot", "method": method, "dataset": "checker-ball", "seed": seed, "sweep": sweep,
            "training": {"method_diagnostics": {part: {
                "sigma_initial": {"mean": 0.01}, "sigma_final": {"mean": 0.011, "relative_to_weight_rms": 0.2},
                "sigma_changed": True, "loss_mean_weights": loss, "loss_change": change}}}}
    return SimpleNamespace(section=("fewshot-corruption", 2, "tiny"),
                           data=SimpleNamespace(method=method, family="few-shot", model_dump=lambda mode=None: data))


def test_bnn_check_reports_the_sampling_effect_and_keeps_sweeps_apart():
    from types import SimpleNamespace

    from bench.families.few_shot.report import bnn_check_lines

    weak = [_fake_bnn("bnn+dreambooth", s, 0.2, 0.0004) for s in range(3)]  # 0.2% of the loss
    strong = [_fake_bnn("bnn+dreambooth", s, 0.2, 0.01, {"bnn.sigma_init": 1.0}) for s in range(3)]  # 5%
    lines = bnn_check_lines(SimpleNamespace(runs=weak + strong, variants=[]))
    (plain,) = [ln for ln in lines if "bnn+dreambooth: BNN check" in ln]
    (swept,) = [ln for ln in lines if "bnn+dreambooth (sigma_init = 1): BNN check" in ln]
    assert "median 0.20% of the loss" in plain and "median 5.00% of the loss" in swept
    assert "Flag" not in plain + swept  # sigma moved and the loss changed; the 1% is a precondition now
