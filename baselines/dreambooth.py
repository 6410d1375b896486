"""DreamBooth (Ruiz et al., CVPR 2023) with prior preservation: the UNet trains on the subject's
images under the instance prompt ("a photo of qwe backpack") and, in the same step, on as many of
the family's class images (the pre-trained model's own samples of "a photo of backpack"), the
loss being instance MSE + `prior_weight` x class MSE, as diffusers' train_dreambooth.py (the base of
the official BNN scripts: --with_prior_preservation --prior_loss_weight=1.0, text encoder frozen).

It edits the batch and the loss only, so it composes with methods that decide what trains:
`bnn+dreambooth` is the paper's DreamBooth + BNN (Bayesian layers, prior preservation).
"""

import torch
from pydantic import Field

from baselines._common import append_rows, train_only
from bench.method import Method, MethodConfig


class DreamBoothConfig(MethodConfig):
    prior_weight: float = Field(1.0, ge=0, description="weight of the class images' loss (official: 1)")


class DreamBooth(Method):
    name = "dreambooth"
    Config = DreamBoothConfig
    summary = "full UNet fine-tuning on the subject + prior preservation on the model's own class images"
    reference = "Ruiz et al., DreamBooth, CVPR 2023 (arXiv 2208.12242); diffusers train_dreambooth.py"
    families = frozenset({"few-shot"})
    groups = ("unet",)
    needs_data = ("class_images",)

    def prepare(self, model, ctx):
        return train_only(model, ctx, self.name, "unet")

    def make_batch(self, batch, ctx):
        k = len(batch["x0"])  # one class image per instance image
        rows = ctx.extra_data("class_images")
        return append_rows(batch, rows, torch.randint(0, len(rows["x0"]), (k,)), flag="prior")

    def loss(self, per_sample, batch, ctx):
        # Means over the global batch's instance and class rows (a process may hold a share of them).
        return (ctx.flag_mean(per_sample, batch, "prior", False)
                + self.config.prior_weight * ctx.flag_mean(per_sample, batch, "prior"))
