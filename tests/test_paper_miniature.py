"""The paper profile's code path, miniaturised, end to end.

dit-transfer's paper profile cannot run here (DiT-XL/2, its VAE and the datasets are downloads),
so this test builds a miniature of it and runs `bench run --profile paper` on it: a tiny DiT with
learned sigma and a tiny AutoencoderKL saved in hub layout in a local folder (loaded through
`from_pretrained`, the branch the hub weights take), a local `imagefolder` dataset (through
`datasets.load_dataset`, as the hub datasets), the paper overlay as it is in the task file (hybrid
loss, EMA), DDPM with the learned variance, Diff-Tuning's knowledge bank VAE-encoded in batches,
and EWC. The only change of branch: the tiny feature extractor stands in for Inception, whose
weights cannot be downloaded here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import ROOT, result_files, without_profiles_preconditions

BATCH = 8  # x 0.2 (Diff-Tuning's bank ratio) = 1 bank row per batch


def _hub_folder(root: Path) -> Path:
    from diffusers import AutoencoderKL, DiTTransformer2DModel

    torch.manual_seed(0)
    dit = DiTTransformer2DModel(num_layers=2, num_attention_heads=2, attention_head_dim=8, in_channels=4,
                                out_channels=8, patch_size=2, sample_size=4, num_embeds_ada_norm=10,
                                norm_type="ada_norm_zero")
    # A converted original DiT carries the same condition embedder in every block.
    for block in dit.transformer_blocks[1:]:
        block.norm1.emb.load_state_dict(dit.transformer_blocks[0].norm1.emb.state_dict())
    dit.save_pretrained(root / "transformer")
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                        norm_num_groups=4, sample_size=8)
    vae.save_pretrained(root / "vae")
    return root


def _imagefolder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 12)):
        for label, colour in (("a", (200, 40, 40)), ("b", (40, 40, 200))):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(n // 2):
                img = np.clip(np.array(colour) + rng.integers(-40, 40, (12, 12, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{i}.png")
    return root


def miniature_task(tmp_path: Path) -> Path:
    raw = yaml.safe_load((ROOT / "tasks" / "dit-transfer.yaml").read_text())
    hub = _hub_folder(tmp_path / "DiT-mini")
    data = _imagefolder(tmp_path / "imagefolder")
    base = raw["base"]
    base["image_size"] = 8
    base["backbone"] = {**base["backbone"], "num_source_classes": 10,
                        "pretrained": {"repo": str(hub), "subfolder": "transformer"},
                        "vae": {"repo": str(hub), "subfolder": "vae"}}
    base["train"] = {**base["train"], "batch_size": BATCH, "steps": 3, "checkpoint_every": 2}
    base["sampling"] = {**base["sampling"], "steps": 3, "num_samples": 12, "batch_size": BATCH}
    base["knowledge_bank"] = {**base["knowledge_bank"], "num_images": 10, "steps": 3, "batch_size": BATCH}
    base["evaluation"] = {**base["evaluation"], "extractor": "tiny", "kid_subset_size": 4, "kid_subsets": 3,
                          "ewc_samples": 24}
    base["datasets"] = {"mini": {"title": "mini", "num_classes": 2,
                                 "hub": {"path": "imagefolder", "data_dir": str(data)}}}
    del raw["profiles"]["tiny"]
    path = tmp_path / "dit-transfer-miniature.yaml"
    path.write_text(yaml.safe_dump(without_profiles_preconditions(raw), sort_keys=False))
    return path


@pytest.fixture
def vae_batches(monkeypatch):
    """The size of every batch the VAE encodes or decodes."""
    from diffusers import AutoencoderKL

    seen = {"encode": [], "decode": []}
    for name in seen:
        original = getattr(AutoencoderKL, name)

        def wrapped(self, x, *a, _original=original, _name=name, **k):
            seen[_name].append(len(x))
            return _original(self, x, *a, **k)

        monkeypatch.setattr(AutoencoderKL, name, wrapped)
    return seen


def test_paper_profile_runs_end_to_end_in_miniature(tmp_path, vae_batches, capsys):
    from bench.cli import main

    task = miniature_task(tmp_path)
    rc = main(["run", "--task", str(task), "--method", "diff-tuning", "--profile", "paper", "--seeds", "0"])
    assert rc == 0, capsys.readouterr()
    [path] = result_files(tmp_path / "results")
    r = json.loads(path.read_text())
    spec = r["resolved_spec"]["spec"]
    # The paper overlay as written in the task file: hybrid loss, EMA, DDPM, VAE, hub-layout weights.
    assert spec["train"]["loss"] == "hybrid" and spec["train"]["ema_decay"] == 0.9999
    assert spec["sampling"]["scheduler"] == "ddpm" and spec["backbone"]["vae"] is not None
    # ... and the original DiT's numerics (tests/test_dit_original.py checks each against the official).
    assert (spec["backbone"]["timestep_embedding"], spec["backbone"]["mlp_norm_eps"],
            spec["backbone"]["guidance_channels"], spec["diffusion"]["timestep_spacing"]) == ("dit", 1e-6, 3, "dit")
    assert r["training"]["steps"] == 3 and np.isfinite(r["training"]["final_loss"])
    assert r["samples"]["n"] == 12 and r["reference"]["n"] == 12
    for name in ("fid", "kid", "is", "prc", "sfid"):
        assert name in r["metrics"]
    ewc = r["metrics"]["ewc"]
    assert ewc["total"] >= 0 and len(ewc["fisher_data_sha256"]) == 64 and ewc["fisher_samples"] == 24
    assert r["provenance"]["knowledge_bank"]["n"] == 10
    # Every VAE call is batched by the task's batch size: the 10-image bank is encoded in chunks of
    # at most 8, never in one call (what would run a 5k-image bank at 256 px out of memory).
    assert vae_batches["encode"] and max(vae_batches["encode"]) <= BATCH
    assert (10 - BATCH) in vae_batches["encode"]  # the bank's last chunk
    assert vae_batches["decode"] and max(vae_batches["decode"]) <= BATCH


def test_dit_copies_that_differ_are_refused(tmp_path):
    """The adapter ties diffusers' per-block condition embedders into one module only if the loaded
    copies are identical (a converted original DiT); anything else is not the papers' model."""
    from diffusers import DiTTransformer2DModel

    from bench.backbone import DiTBackbone
    from bench.errors import BenchError
    from bench.spec import BackboneSpec

    hub = _hub_folder(tmp_path / "good")
    spec = BackboneSpec(kind="dit", pretrained={"repo": str(hub), "subfolder": "transformer"}, num_source_classes=10)
    backbone = DiTBackbone.load(spec)
    blocks = backbone.model.transformer_blocks
    assert blocks[1].norm1.emb is blocks[0].norm1.emb  # one shared module
    names = [n for n, _ in backbone.model.named_parameters() if "class_embedder" in n]
    assert names == ["transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight"]

    bad = DiTTransformer2DModel.from_pretrained(hub, subfolder="transformer")
    with torch.no_grad():
        bad.transformer_blocks[1].norm1.emb.class_embedder.embedding_table.weight.add_(1.0)
    bad.save_pretrained(tmp_path / "bad" / "transformer")
    with pytest.raises(BenchError, match="differs from block 0"):
        DiTBackbone.load(spec.model_copy(update={"pretrained": spec.pretrained.model_copy(
            update={"repo": str(tmp_path / "bad")})}))
