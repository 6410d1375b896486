"""corruption-sweep's evaluation-only mode on the paper profile, miniaturised: `params.weights=
published` loads the released model of each eta (here two tiny DiTs saved in hub layout in local
folders, the branch DiffusionNoise's models take) and evaluates it over the guidance grid without
training, keyed apart from the runs the suite trains; an eta without a released model, or a method
that would train, is one line and writes nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from bench.errors import BenchError
from conftest import ROOT, bench_cli, result_files, without_profiles_preconditions
from test_paper_miniature import _hub_folder

CLASSES = 10  # the miniature DiT's label table (test_paper_miniature._hub_folder)


def _released(root: Path, shift: float) -> Path:
    """A second 'released' model: the miniature with its output layer moved, so etas differ. With a
    shift, also as a release trained in diffusers' own layout is: block 1 has its own label table,
    and the release ships its own autoencoder (decoder moved), which is the one to decode with."""
    from diffusers import AutoencoderKL, DiTTransformer2DModel

    hub = _hub_folder(root)
    dit = DiTTransformer2DModel.from_pretrained(hub / "transformer")
    with torch.no_grad():
        dit.proj_out_2.bias.add_(shift)
        if shift:
            dit.transformer_blocks[1].norm1.emb.class_embedder.embedding_table.weight.add_(shift)
    dit.save_pretrained(hub / "transformer")
    if shift:
        vae = AutoencoderKL.from_pretrained(hub / "vae")
        with torch.no_grad():
            vae.decoder.conv_out.bias.add_(shift)
        vae.save_pretrained(hub / "vae")
    return hub


def _imagefolder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for k in range(CLASSES):
            folder = root / split / f"c{k}"
            folder.mkdir(parents=True)
            for i in range(2):
                img = np.clip(rng.integers(0, 255, 3) + rng.integers(-30, 30, (8, 8, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{i}.png")
    return root


def miniature(tmp_path: Path) -> Path:
    raw = yaml.safe_load((ROOT / "tasks" / "corruption-sweep.yaml").read_text())
    clean, slight = _released(tmp_path / "clean", 0.0), _released(tmp_path / "eta2.5", 0.5)
    base = raw["base"]
    base["image_size"] = 8
    base["backbone"] = {**base["backbone"], "num_source_classes": CLASSES, "vae": {"repo": str(clean), "subfolder": "vae"},
                        "config": {"num_layers": 2, "num_attention_heads": 2, "attention_head_dim": 8, "in_channels": 4,
                                   "out_channels": 8, "patch_size": 2, "sample_size": 4,
                                   "num_embeds_ada_norm": CLASSES, "norm_type": "ada_norm_zero"}}
    base["train"] = {**base["train"], "batch_size": 4, "steps": 3, "checkpoint_every": 2}
    base["sampling"] = {**base["sampling"], "steps": 3, "num_samples": 20, "batch_size": 10}
    base["evaluation"] = {**base["evaluation"], "extractor": "tiny", "metrics": ["fid", "is", "prc", "rmd"]}
    base["params"] = {**base["params"], "guidance_scales": [1.0, 1.5], "memorization_threshold": None,
                      "memorization_extractor": None}
    base["tracking"] = None
    base["datasets"] = {"mini": {"title": "mini", "num_classes": CLASSES,
                                 "hub": {"path": "imagefolder", "data_dir": str(_imagefolder(tmp_path / "data"))}}}
    raw["profiles"] = {"paper": {"params": {"published": {
        "0": {"repo": str(clean), "subfolder": "transformer"}, "2.5": {"repo": str(slight), "subfolder": "transformer"}}}}}
    path = tmp_path / "corruption-sweep-miniature.yaml"
    path.write_text(yaml.safe_dump(without_profiles_preconditions(raw), sort_keys=False))
    return path, clean, slight


def test_published_models_are_evaluated_without_training_and_keyed_apart(tmp_path):
    task, clean, slight = miniature(tmp_path)
    run = ("run", "--task", task, "--profile", "paper", "--seeds", "0", "--task-set", "params.weights=published")
    bench_cli(*run, "--method", "clean", "--sweep", "eta=0,2.5", check_rc=0)
    files = result_files(tmp_path / "results")
    assert len(files) == 2
    results = {json.loads(f.read_text())["task_overrides"]["params.eta"]: json.loads(f.read_text()) for f in files}
    assert sorted(results) == [0, 2.5]
    for eta, hub in ((0, clean), (2.5, slight)):
        r = results[eta]
        # what ran is recorded: the released weights of this eta, zero training steps, no tracking
        assert r["task_overrides"]["backbone.pretrained"] == {"repo": str(hub), "subfolder": "transformer",
                                                              "revision": "main"}  # a local folder: no revisions
        # decoded by the release's own autoencoder, its per-block label tables (eta 2.5) accepted
        assert r["task_overrides"]["backbone.vae"] == {"repo": str(hub), "subfolder": "vae", "revision": "main"}
        assert r["task_overrides"]["backbone.per_block_embedders"] is True
        assert r["task_overrides"]["params.weights"] == "published" and r["task_overrides"]["train.steps"] == 0
        assert r["training"]["steps"] == 0 and r["training"]["loss_curve"] == [] and "tracking" not in r
        assert sorted(r["guidance"]["grid"]) == ["1.0", "1.5"]
    for key in ("backbone_sha256", "final_state_sha256"):  # each eta's own released model
        assert results[0]["provenance"][key] != results[2.5]["provenance"][key]

    # no released model for this eta; a method that would train: refused when the run is planned
    # (the CLI prints a BenchError as its one line), nothing written
    from bench.runner import plan
    from bench.tasks import load_task

    mini = load_task(str(task), "paper")
    for method, eta, says in (("clean", 5, "no published model for eta=5%"), ("cep-u", 0, "run it with --method clean")):
        with pytest.raises(BenchError, match=re.escape(says)):
            plan(mini, method, {}, None, [0], None, sweep={"eta": [eta]}, task_sets={"params.weights": "published"})
    assert result_files(tmp_path / "results") == files

    # the report pairs a published model with the published clean model, never with a trained one
    from bench.families.pretrain_corruption.report import groups
    from bench.report.load import load_results

    rs = load_results(tmp_path / "results", tasks={"corruption-sweep": (raw_version(task), ["paper"])})
    assert rs.problem_lines() == []
    labels = sorted(st.label for st in groups(rs.runs + rs.variants))
    assert labels == ["clean, η=0%, published model", "clean, η=2.5%, published model"]


def raw_version(task: Path) -> int:
    return yaml.safe_load(task.read_text())["version"]
