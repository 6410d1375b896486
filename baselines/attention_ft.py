"""Attention-block fine-tuning (Moon et al., "Fine-tuning Diffusion Models with Limited Data", 2022;
the "Attention-block fine-tuning" row of their Tab. 1): every attention module of
the backbone trains (its GroupNorm, q/k/v and output projections: iDDPM's norm, qkv and
proj_out), the residual blocks and everything else stay frozen. 10.3% of iDDPM ImageNet-64 in the
paper; tests/test_a3ft.py counts it on the same architecture.

Not marked `parameter_efficient`: that flag lists `X+diff-tuning`, a class-transfer method, and
this one belongs to the limited-data family only.
"""

from baselines._common import train_only
from bench.method import Method


class AttentionFineTuning(Method):
    name = "attention-ft"
    families = frozenset({"limited-data"})
    groups = ("attention",)
    summary = "attention blocks only (norm, q/k/v, output projection)"
    reference = "Moon et al., Fine-tuning Diffusion Models with Limited Data, 2022 (Tab. 1, attention-block FT)"

    def prepare(self, model, ctx):
        return train_only(model, ctx, self.name, "attention")
