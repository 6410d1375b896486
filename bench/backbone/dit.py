"""DiT (diffusers DiTTransformer2DModel): class-conditional transformer over latent patches.

Condition: `{"y": class labels}`; the null class (index = number of source classes) is the
unconditional branch of classifier-free guidance and the label of Diff-Tuning's knowledge bank.
DiT-XL/2's learned-sigma channels follow the noise prediction in `output`; `predict` drops them,
and only the hybrid loss (`train.loss: hybrid`, bench/vlb.py) and the DDPM sampler read them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from diffusers import AutoencoderKL, DiTTransformer2DModel
from bench.backbone.base import Backbone, Cond, load_vae
from bench.errors import BenchError
from bench.spec import BackboneSpec

# facebook/DiT-XL-2-256, transformer/config.json: DiT-XL/2 (hidden 16 x 72 = 1152, 28 blocks,
# patch 2 on 32x32x4 SD-VAE latents, learned sigma so 8 output channels, 1000 classes + null).
# The remaining DiTTransformer2DModel arguments keep diffusers' defaults (gelu-approximate,
# attention bias, non-affine LayerNorm, eps 1e-5), which is what the converted checkpoint uses.
# Where diffusers' port computes differently from the original (the timestep sinusoid, the
# pre-MLP LayerNorm eps), `original_dit_numerics` sets the original's at load when the task asks
# (dit-transfer's paper profile: backbone.timestep_embedding / mlp_norm_eps).
DIT_XL_2_256: dict[str, Any] = {
    "num_layers": 28, "num_attention_heads": 16, "attention_head_dim": 72, "in_channels": 4,
    "out_channels": 8, "patch_size": 2, "sample_size": 32, "num_embeds_ada_norm": 1000,
    "norm_type": "ada_norm_zero",
}
KNOWN_ARCHITECTURES: dict[tuple[str, str | None], dict[str, Any]] = {
    ("facebook/DiT-XL-2-256", "transformer"): DIT_XL_2_256,
}


def eps_prediction(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The noise prediction of a diffusers DiT, learned-sigma channels dropped."""
    out = model(x, timestep=t, class_labels=y).sample
    return out[:, : x.shape[1]] if out.shape[1] == 2 * x.shape[1] else out


def tie_condition_embedders(model: DiTTransformer2DModel, check: bool = True,
                            keep_distinct: bool = False) -> DiTTransformer2DModel:
    """Make every block use block 0's timestep + label embedder, as the original DiT does.

    The original DiT-XL/2 has ONE `t_embedder` and ONE `y_embedder` whose sum conditions every
    block's adaLN (674.8M parameters). diffusers' DiTTransformer2DModel gives each block its own
    copy (749.8M); the conversion script fills all 28 with the same weights, and the final layer
    reads block 0's. Left untied, fine-tuning would train 28 independent label tables: a different
    model with a different trainable share (DiffFit 4.39% instead of its 0.12%). `check` refuses
    weights whose copies differ (they are then not a converted original DiT); a model on the meta
    device or freshly initialised is tied without the check. Saved files keep diffusers' layout
    (one copy per block), so they load in plain diffusers too. `keep_distinct` (a release trained in
    diffusers' own layout, `backbone.per_block_embedders`) leaves copies that differ untied, as the
    release has them, instead of refusing them; identical copies are still tied."""
    embs = [b.norm1.emb for b in model.transformer_blocks if hasattr(getattr(b, "norm1", None), "emb")]
    if len(embs) <= 1:
        return model
    first = embs[0]
    if check and next(first.parameters()).device.type != "meta":
        ref = first.state_dict()
        for i, emb in enumerate(embs[1:], start=1):
            for k, v in emb.state_dict().items():
                if not torch.equal(v, ref[k]):
                    if keep_distinct:
                        return model
                    raise BenchError(f"DiT block {i}'s condition embedder ({k}) differs from block 0's; the "
                                     f"original DiT shares one, so these weights are not a converted DiT "
                                     f"(rebuild tiny weights with `bench build-tiny source --task <the task>`)")
    for block in model.transformer_blocks[1:]:
        block.norm1.emb = first
    return model


def original_dit_numerics(model: torch.nn.Module, timestep_embedding: str | None, mlp_norm_eps: float | None) -> dict:
    """Make a diffusers DiT compute as the original one (facebookresearch/DiT, models.py), in place.

    - `timestep_embedding="dit"`: diffusers' `Timesteps` in DiT's CombinedTimestepLabelEmbeddings
      uses downscale_freq_shift=1, frequencies exp(-ln(10000) i / (half - 1)); the original
      `TimestepEmbedder.timestep_embedding` divides by half, [cos, sin]. Shift 0 with
      flip_sin_to_cos reproduces it exactly (tests/test_dit_original.py).
    - `mlp_norm_eps`: the pre-MLP LayerNorm (diffusers' `norm3`, built with norm_eps = 1e-5; the
      original's `norm2`, eps 1e-6). diffusers' adaLN-Zero and final norms already use 1e-6.

    Every module of the model is set, so a ControlNet branch copied from the blocks follows too.
    Returns the settings applied (none for diffusers' defaults). The tiny profile keeps diffusers'
    defaults: its DiT is pre-trained from scratch by the project under them, so they are its own."""
    from diffusers.models.attention import BasicTransformerBlock
    from diffusers.models.embeddings import Timesteps

    applied: dict[str, Any] = {}
    if timestep_embedding == "dit":
        for m in model.modules():
            if isinstance(m, Timesteps):
                m.downscale_freq_shift, m.flip_sin_to_cos = 0, True
        applied["timestep_embedding"] = "dit"
    if mlp_norm_eps is not None:
        for m in model.modules():
            if isinstance(m, BasicTransformerBlock) and isinstance(m.norm3, torch.nn.LayerNorm):
                m.norm3.eps = mlp_norm_eps
        applied["mlp_norm_eps"] = mlp_norm_eps
    return applied


def condition_embedders(model: DiTTransformer2DModel) -> list[torch.nn.Module]:
    """The distinct timestep + label embedders (one once tied, one per block otherwise)."""
    seen: dict[int, torch.nn.Module] = {}
    for block in model.transformer_blocks:
        emb = getattr(getattr(block, "norm1", None), "emb", None)
        if emb is not None:
            seen.setdefault(id(emb), emb)
    return list(seen.values())


@torch.no_grad()
def initialize_dit_weights(model: DiTTransformer2DModel) -> DiTTransformer2DModel:
    """DiT's `initialize_weights` (facebookresearch/DiT models.py) on diffusers' module names, in place:

    - every Linear: Xavier-uniform weight, zero bias. The original's attention projects q, k and v
      with ONE fused (3D, D) Linear, so its Xavier bound is sqrt(6 / 4D); diffusers' to_q/to_k/to_v
      are three (D, D) Linears, so the fused matrix is drawn and split instead of each on its own
      (sqrt(6 / 2D) would be 1.41x wider);
    - the patch embedding (pos_embed.proj) like a Linear: Xavier on the flattened conv weight, zero bias;
    - the label table (class_embedder.embedding_table) ~ N(0, 0.02);
    - the timestep MLP's two weights (timestep_embedder.linear_1/2) ~ N(0, 0.02), biases zero;
    - adaLN-Zero: each block's modulation (norm1.linear) zero weight and bias;
    - the final layer's modulation (proj_out_1) and output projection (proj_out_2) zero.
    The fixed sin-cos position table is diffusers' own buffer and is left as built."""
    nn = torch.nn
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    for block in model.transformer_blocks:
        attn = block.attn1
        d_in = attn.to_q.weight.shape[1]
        if attn.to_k.weight.shape[1] == d_in and attn.to_v.weight.shape[1] == d_in:  # self-attention
            fused = torch.empty(sum(m.weight.shape[0] for m in (attn.to_q, attn.to_k, attn.to_v)), d_in)
            nn.init.xavier_uniform_(fused)
            q, k, v = fused.split([m.weight.shape[0] for m in (attn.to_q, attn.to_k, attn.to_v)])
            for m, w in ((attn.to_q, q), (attn.to_k, k), (attn.to_v, v)):
                m.weight.copy_(w)
    proj = model.pos_embed.proj
    nn.init.xavier_uniform_(proj.weight.view(proj.weight.shape[0], -1))
    nn.init.zeros_(proj.bias)
    for emb in condition_embedders(model):
        nn.init.normal_(emb.class_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(emb.timestep_embedder.linear_1.weight, std=0.02)
        nn.init.normal_(emb.timestep_embedder.linear_2.weight, std=0.02)
    for block in model.transformer_blocks:
        nn.init.zeros_(block.norm1.linear.weight)
        nn.init.zeros_(block.norm1.linear.bias)
    for layer in (model.proj_out_1, model.proj_out_2):
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
    return model


def disable_inner_label_dropout(model: DiTTransformer2DModel) -> None:
    # diffusers gives every DiT block its own label embedder, each dropping labels independently
    # from the global RNG; the families drop labels once per sample instead (as the original DiT).
    for module in model.modules():
        if hasattr(module, "class_embedder") and hasattr(module.class_embedder, "dropout_prob"):
            module.class_embedder.dropout_prob = 0.0


class DiTBackbone(Backbone):
    kind = "dit"
    cond_keys = ("y",)
    denoiser_class = DiTTransformer2DModel
    known_architectures = KNOWN_ARCHITECTURES
    init_schemes = ("dit",)
    groups: ClassVar[dict[str, str]] = {
        "blocks": "the transformer blocks (token sequences of width hidden_size)",
        "attention": "each block's self-attention (to_q, to_k, to_v, to_out.0 inside)",
        "mlp": "each block's feed-forward network",
        "norms": "normalisation layers with affine parameters (none in DiT)",
        "class_embedding": "the label-embedding table (one, shared by every block, as in the original DiT)",
        "embeddings": "patch, timestep and label embedders",
        "output": "the final adaLN modulation and output projection",
    }

    def __init__(self, model, vae, vae_scaling_factor: float, num_source_classes: int, weights_sha256: str):
        super().__init__(model, vae, vae_scaling_factor, weights_sha256)
        self.num_source_classes = num_source_classes

    @property
    def null_class(self) -> int:
        return self.num_source_classes

    @property
    def hidden_size(self) -> int:
        return self.model.config.num_attention_heads * self.model.config.attention_head_dim

    @property
    def patch_input_dim(self) -> int:
        """Inputs of one patch token (patch area x channels), e.g. for VPT's Xavier bound."""
        return self.model.config.patch_size**2 * self.model.config.in_channels

    def output(self, x, t, cond: Cond, model=None):
        return (model if model is not None else self.model)(x, timestep=t, class_labels=cond["y"]).sample

    def null_cond(self, cond: Cond) -> Cond:
        return {"y": torch.full_like(cond["y"], self.null_class)}

    def module_group(self, name: str):
        model = self.model
        blocks = getattr(model, "transformer_blocks", None)
        if not isinstance(blocks, torch.nn.ModuleList):
            raise BenchError(f"the DiT adapter expects a diffusers DiTTransformer2DModel, got {type(model).__name__}")
        prefix = "transformer_blocks"
        if name == "blocks":
            return [(f"{prefix}.{i}", b) for i, b in enumerate(blocks)]
        if name == "attention":
            return [(f"{prefix}.{i}.attn1", b.attn1) for i, b in enumerate(blocks)]
        if name == "mlp":
            return [(f"{prefix}.{i}.ff", b.ff) for i, b in enumerate(blocks)]
        norms = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.RMSNorm)
        named = list(model.named_modules())
        if name == "norms":
            return [(n, m) for n, m in named if isinstance(m, norms) and any(True for _ in m.parameters(recurse=False))]
        if name == "class_embedding":
            return [(n, m) for n, m in named if n.endswith("class_embedder")]
        if name == "embeddings":
            return [(n, m) for n, m in named if n == "pos_embed" or n.endswith(("class_embedder", "timestep_embedder"))]
        if name == "output":
            return [(n, m) for n, m in named if n.startswith("proj_out")]
        return self.group(name)  # an unknown name: group() raises the clear error

    @classmethod
    def hub_refs(cls, spec):
        return [(w, c, r) for w, c, r in (("backbone", DiTTransformer2DModel, spec.pretrained),
                                          ("VAE", AutoencoderKL, spec.vae)) if r is not None]

    @classmethod
    def apply_numerics(cls, model, spec: BackboneSpec) -> dict[str, Any]:
        return original_dit_numerics(model, spec.timestep_embedding, spec.mlp_norm_eps)

    @classmethod
    def build(cls, kwargs):
        model = DiTTransformer2DModel(**kwargs)
        disable_inner_label_dropout(model)
        return model

    @classmethod
    def finalize(cls, model, loaded: bool):
        return tie_condition_embedders(model, check=loaded)

    @classmethod
    def initialize(cls, model, scheme: str):
        cls.check_init(scheme)
        return initialize_dit_weights(model)

    @classmethod
    def load(cls, spec: BackboneSpec) -> "DiTBackbone":
        model, digest = cls.load_denoiser(spec)
        tie_condition_embedders(model, check=True, keep_distinct=bool(spec.per_block_embedders))
        disable_inner_label_dropout(model)
        return cls(model, load_vae(spec), spec.vae_scaling_factor, spec.num_source_classes, digest)

    @classmethod
    def wrap_without_weights(cls, model: torch.nn.Module, spec: BackboneSpec) -> "DiTBackbone":
        return cls(model, None, spec.vae_scaling_factor, spec.num_source_classes, "architecture-only")
