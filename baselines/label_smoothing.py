"""Label smoothing of the class condition (the "label smoothing" row of the corruption paper's
comparison with CEP): a label y becomes the soft label (1 - eps) onehot(y) + eps / K, and an
embedding table maps a soft label to the same mix of its rows, so while training the embedding of
y is (1 - eps) e_y + eps * mean_k e_k over the K real classes. The null (unconditional) label is
left alone; sampling uses the plain table. How the paper smooths a diffusion model's labels is not
stated [unsure]; this is the linear reading."""

from __future__ import annotations

import torch
from pydantic import Field

from baselines._common import mark_prepared
from bench.errors import BenchError
from bench.method import Method, MethodConfig


class LabelSmoothingConfig(MethodConfig):
    eps: float = Field(0.1, gt=0, lt=1, description="mass spread uniformly over the K classes")


class LabelSmoothing(Method):
    name = "label-smoothing"
    Config = LabelSmoothingConfig
    summary = "class embedding of the soft label (1 - eps) onehot + eps / K while training"
    reference = "Chen et al. 2024, comparison table (clean, dropout, label smoothing, CEP)"
    families = frozenset({"pretrain-corruption", "class-transfer"})
    groups = ("class_embedding",)

    def prepare(self, model, ctx):
        mark_prepared(model, self.name)
        null = getattr(ctx.backbone, "null_class", None)
        if null is None:
            raise BenchError("label-smoothing needs a class-conditional backbone with a null class")
        eps = self.config.eps

        def smooth(module, args, out):
            if not (module.training and torch.is_grad_enabled()):
                return None
            table = next(module.parameters())  # (K + 1, d): K classes, then the null row
            labels = args[0]
            soft = (1 - eps) * out + eps * table[:null].mean(0)
            return torch.where((labels != null)[:, None], soft, out)

        for m in ctx.backbone.group("class_embedding"):
            m.register_forward_hook(smooth)
        return model
