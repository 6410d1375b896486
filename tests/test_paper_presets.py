"""The paper presets of corruption-sweep against the original code (issue 33, item 4):

- DiT pre-trained from scratch is initialised as DiT's `initialize_weights` does
  (facebookresearch/DiT models.py), checked rule by rule on every parameter group;
- the LDM-4 preset is the UNet of CompVis/latent-diffusion configs/latent-diffusion/cin256-v2.yaml
  (one full-width attention head, `use_ema: False`), checked against the yaml's values;
- published-model evaluation loads a pinned release with its own autoencoder and accepts the
  per-block condition embedders a release trained in diffusers' layout has.

The sampler's `clip_denoised` (improved-diffusion) is tested in test_sampling.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from bench.backbone import adapter_class, load_backbone
from bench.errors import BenchError
from bench.spec import BackboneSpec

# -- DiT's initialize_weights -----------------------------------------------------------------------

HIDDEN = 64
DIT = {"num_layers": 3, "num_attention_heads": 2, "attention_head_dim": 32, "in_channels": 4, "out_channels": 8,
       "patch_size": 2, "sample_size": 8, "num_embeds_ada_norm": 10, "norm_type": "ada_norm_zero"}


def _scratch(init: str | None, seed: int = 0):
    torch.manual_seed(seed)
    spec = BackboneSpec(kind="dit", from_scratch=True, num_source_classes=10, vae=None, config=DIT, init=init)
    return load_backbone(spec).model  # what a pre-training run builds


def _assert_xavier(w: torch.Tensor, fan_in: int, fan_out: int, what: str) -> None:
    """U(-b, b) with b = sqrt(6 / (fan_in + fan_out)): inside the bound, reaching it, std b / sqrt(3)."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    assert w.abs().max() <= bound + 1e-7, what
    assert w.abs().max() > 0.9 * bound, what
    assert abs(w.std().item() - bound / math.sqrt(3)) < 0.08 * bound / math.sqrt(3), what
    assert abs(w.mean().item()) < 0.1 * bound, what


def _assert_normal(w: torch.Tensor, std: float, what: str) -> None:
    assert abs(w.std().item() - std) < 0.12 * std, what
    assert abs(w.mean().item()) < 0.2 * std, what
    assert w.abs().max() > 2 * std, what  # a normal, not a uniform of that std (max ~1.7 std)


def test_dit_from_scratch_follows_the_official_initialize_weights():
    model = _scratch("dit")
    blocks = model.transformer_blocks
    zero = lambda t: bool(torch.count_nonzero(t) == 0)  # noqa: E731

    # the condition embedder is one shared module (the original's t_embedder + y_embedder)
    emb = blocks[0].norm1.emb
    assert all(b.norm1.emb is emb for b in blocks)
    _assert_normal(emb.class_embedder.embedding_table.weight, 0.02, "label table")
    _assert_normal(emb.timestep_embedder.linear_1.weight, 0.02, "timestep MLP linear 1")
    _assert_normal(emb.timestep_embedder.linear_2.weight, 0.02, "timestep MLP linear 2")
    assert zero(emb.timestep_embedder.linear_1.bias) and zero(emb.timestep_embedder.linear_2.bias)

    # the patch embedding like a Linear: Xavier over (hidden, C * p * p), zero bias
    proj = model.pos_embed.proj
    _assert_xavier(proj.weight, DIT["in_channels"] * DIT["patch_size"] ** 2, HIDDEN, "patch embedding")
    assert zero(proj.bias)

    for i, block in enumerate(blocks):
        a = block.attn1
        # timm's Attention projects q, k, v with ONE (3D, D) Linear: its Xavier bound is sqrt(6 / 4D)
        qkv = torch.cat([a.to_q.weight, a.to_k.weight, a.to_v.weight])
        _assert_xavier(qkv, HIDDEN, 3 * HIDDEN, f"block {i} fused qkv")
        for m in (a.to_q, a.to_k, a.to_v):
            assert zero(m.bias)
        _assert_xavier(a.to_out[0].weight, HIDDEN, HIDDEN, f"block {i} attention out")
        _assert_xavier(block.ff.net[0].proj.weight, HIDDEN, 4 * HIDDEN, f"block {i} mlp fc1")
        _assert_xavier(block.ff.net[2].weight, 4 * HIDDEN, HIDDEN, f"block {i} mlp fc2")
        assert zero(a.to_out[0].bias) and zero(block.ff.net[0].proj.bias) and zero(block.ff.net[2].bias)
        # adaLN-Zero: the block's modulation starts at zero, weight and bias
        assert zero(block.norm1.linear.weight) and zero(block.norm1.linear.bias)

    # the final layer: modulation (proj_out_1) and output projection (proj_out_2) zero
    for layer in (model.proj_out_1, model.proj_out_2):
        assert zero(layer.weight) and zero(layer.bias)

    # hence the fresh model predicts exactly zero, as the original DiT at step 0
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([3, 700]), torch.tensor([1, 10])
    with torch.no_grad():
        assert zero(model(x, timestep=t, class_labels=y).sample)

    # drawn from the global RNG: the run's seed fixes it
    same, other = _scratch("dit", seed=0), _scratch("dit", seed=1)
    state = model.state_dict()
    assert all(torch.equal(v, same.state_dict()[k]) for k, v in state.items())
    assert not torch.equal(state["pos_embed.proj.weight"], other.state_dict()["pos_embed.proj.weight"])


def test_without_init_the_diffusers_default_is_kept():
    """`init` unset (every tiny profile, whose committed results were trained so) changes nothing."""
    model = _scratch(None)
    assert torch.count_nonzero(model.proj_out_2.weight) > 0
    assert torch.count_nonzero(model.transformer_blocks[0].norm1.linear.weight) > 0


def test_the_paper_profile_asks_for_dit_init_and_nothing_else_does():
    from bench.tasks import load_task

    assert load_task("corruption-sweep", "paper").spec.backbone.init == "dit"
    for profile in ("tiny", "paper-ldm4"):
        assert load_task("corruption-sweep", profile).spec.backbone.init is None
    with pytest.raises(BenchError, match="no initialisation 'dit'"):
        adapter_class("ldm").check_init("dit")
    with pytest.raises(ValueError, match="from_scratch"):
        BackboneSpec(kind="dit", pretrained={"repo": "x"}, init="dit")


# -- LDM-4 = cin256-v2 ------------------------------------------------------------------------------

# CompVis/latent-diffusion, configs/latent-diffusion/cin256-v2.yaml (model.params and its
# unet_config / cond_stage_config params), copied by hand:
CIN256_V2 = {
    "use_ema": False,
    "linear_start": 0.0015, "linear_end": 0.0195, "timesteps": 1000,
    "image_size": 64, "in_channels": 3, "out_channels": 3, "model_channels": 192,
    "attention_resolutions": [8, 4, 2], "num_res_blocks": 2, "channel_mult": [1, 2, 3, 5],
    "num_heads": 1,  # and no num_head_channels: one head, dim_head = ch // num_heads
    "transformer_depth": 1, "context_dim": 512,
    "n_classes": 1001, "embed_dim": 512,
}


def test_ldm4_preset_is_the_cin256_v2_unet():
    from diffusers.models.attention_processor import Attention

    c = CIN256_V2
    spec = BackboneSpec(kind="ldm", from_scratch=True, num_source_classes=1000, config={"preset": "ldm4-cin256-v2"})
    model = adapter_class("ldm").build_without_weights(spec)
    unet = model.unet
    cfg = unet.config
    assert (cfg.sample_size, cfg.in_channels, cfg.out_channels) == \
        (c["image_size"], c["in_channels"], c["out_channels"])
    assert list(cfg.block_out_channels) == [c["model_channels"] * m for m in c["channel_mult"]]
    assert cfg.layers_per_block == c["num_res_blocks"] and cfg.cross_attention_dim == c["context_dim"]
    assert model.class_embedder.weight.shape == (c["n_classes"], c["embed_dim"])
    # attention where the downsampling factor 2**level is in attention_resolutions, down and up
    for level, block in enumerate(unet.down_blocks):
        assert hasattr(block, "attentions") == (2**level in c["attention_resolutions"])
    for level, block in zip(reversed(range(len(unet.up_blocks))), unet.up_blocks):
        assert hasattr(block, "attentions") == (2**level in c["attention_resolutions"])
    transformers = [m for n, m in unet.named_modules() if n.endswith(tuple(f"attentions.{i}" for i in range(3)))]
    assert transformers and all(len(t.transformer_blocks) == c["transformer_depth"] for t in transformers)
    # num_heads 1: every attention (self and cross, mid block included) is ONE head as wide as its level
    attns = [(n, m) for n, m in unet.named_modules() if isinstance(m, Attention)]
    assert attns
    widths = set()
    for name, m in attns:
        assert m.heads == c["num_heads"], name
        assert m.inner_dim == m.to_q.out_features and m.to_q.out_features in cfg.block_out_channels, name
        widths.add(m.to_q.out_features)
    levels = [i for i in range(len(c["channel_mult"])) if 2**i in c["attention_resolutions"]]
    assert widths == {c["model_channels"] * c["channel_mult"][i] for i in levels}


def test_the_ldm4_profile_follows_cin256_v2_and_the_old_preset_is_refused():
    from bench.tasks import load_task

    spec = load_task("corruption-sweep", "paper-ldm4").spec
    assert spec.train.ema_decay is None  # use_ema: False
    assert (spec.diffusion.beta_start, spec.diffusion.beta_end) == (CIN256_V2["linear_start"], CIN256_V2["linear_end"])
    assert spec.diffusion.num_train_timesteps == CIN256_V2["timesteps"]
    old = BackboneSpec(kind="ldm", from_scratch=True, num_source_classes=1000, config={"preset": "ldm4-cin256"})
    with pytest.raises(BenchError, match="one full-width head") as err:
        adapter_class("ldm").architecture(old)
    assert "\n" not in str(err.value)


# -- published models ----------------------------------------------------------------------------

def _published(eta: float, entry: dict | None = None):
    from bench.families import family_class
    from bench.tasks import load_task

    task = load_task("corruption-sweep", "paper")
    overrides = {"params.weights": "published", "params.eta": eta}
    if entry is not None:
        overrides["params.published"] = {f"{eta:g}": entry}
    return family_class("pretrain-corruption").resolve(task.with_overrides(overrides), "clean")


def test_an_unpinned_release_is_refused_in_one_line():
    for entry in (None, {"revision": "main"}, {"revision": "eab87f7"}):
        with pytest.raises(BenchError, match="not pinned") as err:
            _published(2.5, entry)
        assert "\n" not in str(err.value) and "random_noise_2.5" in str(err.value)


def test_a_pinned_release_loads_its_transformer_and_its_own_vae_at_that_commit():
    sha = "0123456789abcdef0123456789abcdef01234567"
    task = _published(2.5, {"revision": sha})
    bb = task.spec.backbone
    repo = "DiffusionNoise/dit-xl-2_imagenet_random_noise_2.5"
    assert bb.pretrained.model_dump() == {"repo": repo, "revision": sha, "subfolder": "transformer"}
    assert bb.vae.model_dump() == {"repo": repo, "revision": sha, "subfolder": "vae"}  # not facebook/DiT-XL-2-256's
    assert bb.per_block_embedders is True and bb.init is None and not bb.from_scratch
    assert task.spec.train.steps == 0 and task.spec.tracking is None


def test_per_block_condition_embedders_of_a_release_are_kept(tmp_path):
    """A release trained in diffusers' own layout has a label table (and timestep MLP) in every
    block; published mode keeps them per block and computes what plain diffusers computes."""
    from diffusers import DiTTransformer2DModel

    from bench.backbone import DiTBackbone
    from test_paper_miniature import _hub_folder

    hub = _hub_folder(tmp_path)
    dit = DiTTransformer2DModel.from_pretrained(hub / "transformer")
    with torch.no_grad():
        dit.transformer_blocks[1].norm1.emb.class_embedder.embedding_table.weight.add_(0.5)
        dit.transformer_blocks[1].norm1.emb.timestep_embedder.linear_2.bias.add_(0.1)
    dit.save_pretrained(hub / "transformer")
    spec = BackboneSpec(kind="dit", pretrained={"repo": str(hub), "subfolder": "transformer"},
                        vae={"repo": str(hub), "subfolder": "vae"}, num_source_classes=10)
    with pytest.raises(BenchError, match="differs from block 0"):  # a fine-tuning task still refuses them
        DiTBackbone.load(spec)
    bb = DiTBackbone.load(spec.model_copy(update={"per_block_embedders": True}))
    blocks = bb.model.transformer_blocks
    assert blocks[1].norm1.emb is not blocks[0].norm1.emb
    assert len(bb.module_group("class_embedding")) == len(blocks)
    x, t, y = torch.randn(2, 4, 4, 4), torch.tensor([5, 900]), torch.tensor([2, 10])
    with torch.no_grad():
        torch.testing.assert_close(bb.output(x, t, {"y": y}), dit(x, timestep=t, class_labels=y).sample)
    # identical copies (a converted original DiT) are still tied into one, per_block_embedders or not
    same_hub = _hub_folder(tmp_path / "same")
    same = BackboneSpec(kind="dit", pretrained={"repo": str(same_hub), "subfolder": "transformer"},
                        num_source_classes=10, per_block_embedders=True)
    tied = DiTBackbone.load(same).model.transformer_blocks
    assert tied[1].norm1.emb is tied[0].norm1.emb
