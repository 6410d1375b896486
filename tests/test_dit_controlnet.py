"""corruption-controlnet: a ControlNet branch beside a class-conditional DiT (backbone
`dit-controlnet`), the controlnet family on labelled data, the colour-mask condition of the source
domain. Personalising a finished pre-training run's model (`--backbone-from` a `dit` run) is tested
beside dit-transfer's transfer of the same run, in test_corruption_sweep.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from bench.backbone import adapter_class, load_backbone
from bench.families.controlnet.conditions import get_condition_extractor
from bench.data.domains import GENERATORS
from bench.errors import BenchError
from bench.families.controlnet import ControlNetFamily
from bench.method import TrainContext
from bench.registry import build_method
from bench.tasks import load_task
from conftest import ROOT, small_task_file

TASK = load_task("corruption-controlnet", "tiny")


def controlled():
    torch.manual_seed(0)
    return load_backbone(TASK.spec.backbone)


def inputs(n=4):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(n, 3, 16, 16, generator=g), torch.tensor([10, 300, 600, 900][:n]),
            torch.tensor([1, 5, 63, 64][:n]), torch.rand(n, 3, 16, 16, generator=g))


def test_a_fresh_branch_copies_the_first_blocks_and_leaves_the_dit_unchanged():
    bb = controlled()
    assert len(bb.model.controlnet.blocks) == 2
    for copy, block in zip(bb.model.controlnet.blocks, bb.model.transformer_blocks):
        theirs = block.state_dict()
        assert all(torch.equal(v, theirs[k]) for k, v in copy.state_dict().items())
        assert copy is not block
    x, t, y, c = inputs()
    with torch.no_grad():
        plain = bb.output(x, t, {"y": y})
        assert torch.equal(bb.output(x, t, {"y": y, "control": c}), plain)  # zero linears: no effect at step 0
        for layer in bb.model.controlnet.outs:
            layer.weight.fill_(0.01)
        bb.model.controlnet.cond_in.weight.fill_(0.01)
        moved = bb.output(x, t, {"y": y, "control": c})
        assert not torch.allclose(moved, plain)
        assert not torch.allclose(bb.output(x, t, {"y": y, "control": 1 - c}), moved)  # the map steers it
        assert torch.equal(bb.output(x, t, {"y": y}), plain)  # the hooks are gone after the call
    null = bb.null_cond({"y": y, "control": c})
    assert (null["y"] == 64).all() and null["control"] is c  # guidance drops the label, keeps the map


def test_controlnet_method_trains_the_branch_only_and_groups_exclude_it():
    bb = controlled()
    method = build_method("controlnet", {}, family="controlnet")
    model = method.prepare(bb.model, TrainContext(backbone=bb, dataset=None, num_timesteps=1000, batch_size=4))
    assert {n.split(".")[0] for n, _ in method.trainable_parameters(model)} == {"controlnet"}
    x, t, y, c = inputs()
    bb.output(x, t, {"y": y, "control": c}).pow(2).mean().backward()
    assert bb.model.controlnet.outs[-1].weight.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in bb.model.named_parameters() if not n.startswith("controlnet."))
    assert [n for n, _ in bb.module_group("class_embedding")] == ["transformer_blocks.0.norm1.emb.class_embedder"]


def test_paper_architecture_counts_on_meta():
    """DiT-XL/2 as the original (674.8M, shared embedders) and a branch of its first 14 blocks."""
    spec = load_task("corruption-controlnet", "paper").spec.backbone
    model = adapter_class(spec.kind).build_without_weights(spec)
    branch = sum(p.numel() for p in model.controlnet.parameters())
    assert round((sum(p.numel() for p in model.parameters()) - branch) / 1e6, 1) == 674.8
    # 14 blocks of 23,905,152 (attention, MLP, adaLN modulation), one shared condition embedder
    # (2,777,472), the map's patch embedding (19,584) and 15 zero linears of 1152 x 1152 + bias.
    assert len(model.controlnet.blocks) == 14
    assert branch == 14 * 23_905_152 + 2_777_472 + 19_584 + 15 * (1152 * 1152 + 1152)


def test_chroma_masks_recover_the_source_domains_painted_shapes():
    images, _ = GENERATORS["source-shapes"](64, np.random.default_rng(3), 16)
    masks = get_condition_extractor("chroma-mask")(images)
    assert masks.shape == (64, 3, 16, 16) and set(np.unique(masks)) <= {0.0, 1.0}
    share = masks[:, 0].reshape(64, -1).mean(1)
    assert share.min() > 0.02 and share.max() < 0.5  # one shape per image, never the background
    grey = np.full((1, 16, 16, 3), 90, np.uint8)
    disk = grey.copy()
    yy, xx = np.mgrid[:16, :16]
    inside = (yy - 8) ** 2 + (xx - 8) ** 2 < 20
    disk[0][inside] = (230, 40, 40)
    assert get_condition_extractor("chroma-mask")(grey).max() == 0.0
    assert np.array_equal(get_condition_extractor("chroma-mask")(disk)[0, 0] > 0.5, inside)


def test_class_batches_carry_labels_maps_and_the_null_class(tmp_path):
    tiny = yaml.safe_load((ROOT / "tasks" / "corruption-controlnet.yaml").read_text())["profiles"]["tiny"]
    task = load_task(str(small_task_file(tmp_path, "corruption-controlnet",
                                         params={**tiny["params"], "empty_prompt_ratio": 0.5})), "tiny")
    fam = ControlNetFamily(task, "segmentation")
    fam.load_data()
    fam.bind(controlled())
    assert np.array_equal(fam.train_set.maps.numpy(), fam.extractor(fam.train_set.images.numpy()))
    torch.manual_seed(0)
    batch = fam.draw_batch(task.spec.train.model_copy(update={"batch_size": 400}))
    assert set(batch) == {"x0", "y", "control"} and batch["control"].shape == (400, 3, 16, 16)
    assert abs((batch["y"] == 64).float().mean().item() - 0.5) < 0.1  # dropped to the null class
    bank = fam.extra("knowledge_bank")
    assert set(bank) == {"x0", "y", "control"} and bank["y"].max() < 64  # sampled for training labels


def test_a_text_backbone_on_class_data_is_refused(tmp_path):
    task = small_task_file(tmp_path, "corruption-controlnet")
    task.write_text(task.read_text().replace("kind: dit-controlnet", "kind: sd-controlnet"))
    with pytest.raises(BenchError, match="needs synthetic generator 'layouts'"):
        ControlNetFamily.check(load_task(str(task), "tiny"))


@pytest.mark.parametrize("kind", ["dit-controlnet", "sd-controlnet"])
def test_controlnet_adapters_take_runs_of_their_base_kind(kind):
    assert adapter_class(kind).base_kind == kind.split("-")[0]


def test_class_labels_outside_the_pretrained_label_space_are_refused(tmp_path):
    raw = yaml.safe_load(small_task_file(tmp_path, "corruption-controlnet").read_text())
    raw["profiles"]["tiny"]["datasets"]["edge"]["num_classes"] = 65  # the tiny DiT knows 64 classes
    path = tmp_path / "wide.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(BenchError, match="num_source_classes"):
        ControlNetFamily.check(load_task(str(path), "tiny"))


def test_a_latent_branch_encodes_each_batchs_maps_once_per_sampling_batch():
    """The maps pass the VAE once per sampling batch, not at every denoiser call (guidance doubles
    the calls and concatenates the maps anew each step), and reusing the encoding changes nothing."""
    from diffusers import AutoencoderKL, DiTTransformer2DModel

    from bench.backbone.dit_controlnet import DiTControlNetBackbone
    from bench.sampling import sample
    from bench.spec import DiffusionSpec

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), latent_channels=4,
                        norm_num_groups=8, layers_per_block=1, sample_size=16).eval()
    dit = DiTTransformer2DModel(sample_size=8, patch_size=2, in_channels=4, out_channels=4, num_layers=2,
                                num_attention_heads=2, attention_head_dim=8, num_embeds_ada_norm=8,
                                norm_type="ada_norm_zero")
    DiTControlNetBackbone.extend(dit, {"controlnet": {"num_blocks": 1}})
    with torch.no_grad():
        for layer in dit.controlnet.outs:
            layer.weight.normal_(0, 0.1)
        dit.controlnet.cond_in.weight.normal_(0, 0.1)
    bb = DiTControlNetBackbone(dit, vae, 0.18215, 8, "test")
    calls = []
    encode = vae.encode
    vae.encode = lambda x, *a, **k: calls.append(len(x)) or encode(x, *a, **k)
    g = torch.Generator().manual_seed(2)
    cond = {"y": torch.tensor([1, 2, 3, 4, 5]), "control": torch.rand(5, 3, 16, 16, generator=g)}
    kw = dict(diffusion=DiffusionSpec(), scheduler="ddim", steps=6, guidance_scale=2.0, seed=0, decode=False)
    cached = sample(bb, cond, batch_size=3, **kw)
    assert calls == [6, 4]  # two sampling batches (3 + 2 rows, doubled by guidance), one encode each
    calls.clear()

    def uncached(*args, **kwargs):  # the maps encoded again at every call, as before
        bb._control_cache = None
        return DiTControlNetBackbone.output(bb, *args, **kwargs)

    bb.output = uncached
    assert torch.equal(sample(bb, cond, batch_size=3, **kw), cached) and calls == [6] * 6 + [4] * 6
