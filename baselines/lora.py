"""LoRA (Hu et al., ICLR 2022) through peft: a rank-r update B·A beside frozen attention weights.

peft's `inject_adapter_in_model` wraps the targeted Linear layers of the diffusers DiT in place
(the model stays a DiTTransformer2DModel; base weights move to `<target>.base_layer.weight`).
A gets peft's Kaiming init from torch's global RNG (seeded by the trainer), B starts at zero, so
the prepared model computes exactly what the pre-trained one does.
"""

from pydantic import Field, field_validator

from baselines._common import ParameterEfficientMethod, freeze, mark_prepared, unfreeze
from bench.method import MethodConfig

TARGETS = ("to_q", "to_k", "to_v", "to_out.0")  # the self-attention Linear layers of a DiT block


class LoRAConfig(MethodConfig):
    rank: int = Field(8, ge=1, description="rank r of the update (DiffFit Tab. 1 reports r=8 and r=16)")
    alpha: float | None = Field(None, gt=0, description="scale numerator; the update is (alpha/r)·B·A; None = rank")
    targets: tuple[str, ...] = Field(("to_q", "to_k", "to_v"),
                                     description="attention Linear layers to adapt (to_q, to_k, to_v, to_out.0)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA branch input")

    @field_validator("targets")
    @classmethod
    def _known_targets(cls, value):
        if not value or not set(value) <= set(TARGETS):
            raise ValueError(f"must be a non-empty subset of {list(TARGETS)}")
        return value


class LoRA(ParameterEfficientMethod):
    name = "lora"
    Config = LoRAConfig
    summary = "low-rank updates of the attention projections (peft), rank 8"
    groups = ("attention",)
    # Also unconditional UNets: their attention modules (LoRA) and biases (BitFit) are the same kind.
    # few-shot: the DreamBooth-LoRA baseline (all UNet attention, self and cross, as diffusers'
    # LoRA attention processors), at the official scripts' rank 4 on q, k, v, out (family_defaults).
    families = frozenset({"class-transfer", "limited-data", "few-shot"})
    # The official few-shot scripts (train_dreambooth_lora.py / _bayes_lora.py): rank 4 on q, k, v
    # and out of every attention layer, self and cross (diffusers' LoRAAttnProcessor).
    family_defaults = {"few-shot": {"rank": 4, "targets": TARGETS}}
    reference = "Hu et al., LoRA, ICLR 2022 (arXiv 2106.09685); baseline LoRA-R8/R16 in DiffFit Tab. 1"

    def prepare(self, model, ctx):
        from peft import LoraConfig, inject_adapter_in_model

        attention = [name for name, _ in ctx.backbone.module_group("attention")]
        mark_prepared(model, self.name)
        c = self.config
        freeze(model)
        # Exact module names: only the projections inside the backbone's attention group.
        targets = [f"{name}.{t}" for name in attention for t in c.targets]
        config = LoraConfig(r=c.rank, lora_alpha=c.alpha if c.alpha is not None else c.rank,
                            lora_dropout=c.dropout, target_modules=targets, bias="none")
        model = inject_adapter_in_model(config, model, adapter_name="default")
        freeze(model)  # peft may leave other parameters trainable; ours are exactly the lora_ ones
        unfreeze(p for n, p in model.named_parameters() if ".lora_" in n)
        return model
