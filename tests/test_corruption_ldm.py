"""corruption-sweep's LDM-4 profile (`paper-ldm4`, backbone `ldm`), miniaturised: a class-conditional
UNet2DConditionModel over the latents of a VQ autoencoder saved in hub layout in a local folder,
pre-trained from scratch on an imagefolder dataset through exactly the profile's code path, with
CEP acting on its class embedding; the real architecture counted on the meta device; offline, the
real profile is one line."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from bench.backbone import adapter_class
from bench.spec import BackboneSpec
from conftest import ROOT, bench_cli, result_files, without_profiles_preconditions
from test_corruption_published import CLASSES, _imagefolder


def _vq_folder(root: Path) -> Path:
    from diffusers import VQModel

    torch.manual_seed(0)
    VQModel(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(8, 16), layers_per_block=1,
            latent_channels=3, num_vq_embeddings=16, norm_num_groups=4, vq_embed_dim=3,
            sample_size=8).save_pretrained(root / "vqvae")
    return root


UNET = {"sample_size": 4, "in_channels": 3, "out_channels": 3, "block_out_channels": [16, 32], "layers_per_block": 1,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"], "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        "cross_attention_dim": 16, "attention_head_dim": 2, "norm_num_groups": 8}


def miniature(tmp_path: Path) -> Path:
    raw = yaml.safe_load((ROOT / "tasks" / "corruption-sweep.yaml").read_text())
    base = raw["base"]
    base["image_size"] = 8
    base["backbone"] = {**base["backbone"], "num_source_classes": CLASSES}
    base["evaluation"] = {**base["evaluation"], "extractor": "tiny", "metrics": ["fid", "is"]}
    base["params"] = {**base["params"], "guidance_scales": [1.0, 1.5], "memorization_threshold": None,
                      "memorization_extractor": None}
    base["tracking"] = None
    base["datasets"] = {"mini": {"title": "mini", "num_classes": CLASSES,
                                 "hub": {"path": "imagefolder", "data_dir": str(_imagefolder(tmp_path / "data"))}}}
    ldm = raw["profiles"]["paper-ldm4"]
    ldm["backbone"] = {**ldm["backbone"], "vae": {"repo": str(_vq_folder(tmp_path / "vq")), "subfolder": "vqvae"},
                       "config": {"unet": UNET, "n_classes": CLASSES + 1}}
    ldm["train"] = {**ldm["train"], "batch_size": 4, "steps": 3, "checkpoint_every": 2}
    ldm["sampling"] = {**ldm["sampling"], "steps": 3, "num_samples": 20, "batch_size": 10}
    raw["profiles"] = {"paper-ldm4": ldm}
    path = tmp_path / "corruption-sweep-ldm.yaml"
    path.write_text(yaml.safe_dump(without_profiles_preconditions(raw), sort_keys=False))
    return path


def test_ldm4_pretrains_from_scratch_on_vq_latents_with_cep_on_its_class_embedding(tmp_path):
    task = miniature(tmp_path)
    bench_cli("run", "--task", task, "--profile", "paper-ldm4", "--method", "cep-u", "--sweep", "eta=2.5",
              "--seeds", "0", check_rc=0)
    (path,) = result_files(tmp_path / "results")
    r = json.loads(path.read_text())
    spec = r["resolved_spec"]["spec"]
    assert spec["backbone"]["kind"] == "ldm" and spec["diffusion"]["beta_schedule"] == "scaled_linear"
    assert len(r["training"]["loss_curve"]) > 0 and sorted(r["guidance"]["grid"]) == ["1.0", "1.5"]
    assert r["provenance"]["corruption"]["labels_sha256"]  # the corrupted label list, by hash
    # CEP's delta reaches LDM's class embedding: the hook it registers on the `class_embedding`
    # group perturbs the embedding in training (and only there)
    from bench.backbone import load_backbone
    from bench.method import TrainContext
    from bench.registry import build_method
    from bench.spec import BackboneSpec as Spec

    bb = load_backbone(Spec.model_validate(spec["backbone"]))
    method = build_method("cep-u", {}, family="pretrain-corruption")
    method.prepare(bb.model, TrainContext(backbone=bb, dataset=None, num_timesteps=1000, batch_size=2))
    y = torch.tensor([1, 2])
    method.train_batch(method.make_batch({"x0": torch.zeros(2, 3, 4, 4)}, None), None)  # as the trainer does
    bb.model.train()
    perturbed = bb.model.class_embedder(y)
    bb.model.eval()
    assert not torch.equal(perturbed, bb.model.class_embedder(y))
    assert (perturbed - bb.model.class_embedder(y)).abs().max() <= method.scale


def test_vq_latents_are_quantised_at_decoding(tmp_path):
    from bench.backbone import load_backbone

    vq = _vq_folder(tmp_path)
    spec = BackboneSpec(kind="ldm", from_scratch=True, num_source_classes=CLASSES, vae={"repo": str(vq), "subfolder": "vqvae"},
                        vae_scaling_factor=1.0, config={"unet": UNET, "n_classes": CLASSES + 1})
    bb = load_backbone(spec)
    images = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8)
    z = bb.encode(images)
    assert z.shape == (2, 3, 4, 4)  # f2 in the miniature (f4 for LDM-4): 3 latent channels
    quantised = bb.vae.quantize(z)[0]
    assert torch.equal(bb.decode(z), bb.decode(quantised))  # decoding snaps to the codebook first
    y = torch.tensor([0, CLASSES - 1])
    assert (bb.null_cond({"y": y})["y"] == CLASSES).all() and bb.null_class == CLASSES


def test_ldm4_architecture_counts_on_meta():
    """The LDM repository's cin256-v2 UNet with its 1001-row class table: 401.4M parameters (the
    LDM paper lists its class-conditional ImageNet LDM-4 at 400M)."""
    spec = BackboneSpec(kind="ldm", from_scratch=True, num_source_classes=1000, config={"preset": "ldm4-cin256-v2"})
    model = adapter_class("ldm").build_without_weights(spec)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 401.4
    assert model.class_embedder.weight.shape == (1001, 512)
    bad = spec.model_copy(update={"num_source_classes": 10})
    try:
        adapter_class("ldm").architecture(bad)
        raise AssertionError("a class table that does not fit the label space must be refused")
    except Exception as exc:
        assert "n_classes" in str(exc)


def test_the_real_profile_offline_names_the_vq_autoencoder_in_one_line():
    from bench.errors import BenchError
    from bench.tasks import load_task

    spec = load_task("corruption-sweep", "paper-ldm4").spec.backbone
    try:
        adapter_class(spec.kind).preflight(spec)
        raise AssertionError("offline, the hub's VQ-f4 cannot be loaded")
    except BenchError as exc:
        assert "ldm-super-resolution-4x-openimages" in str(exc) and "\n" not in str(exc)
