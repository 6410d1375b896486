"""ControlNet (Zhang, Rao and Agrawala, ICCV 2023), as trained in lllyasviel/ControlNet with
`sd_locked=True` and in diffusers' train_controlnet.py: the ControlNet trains (its copy of the
UNet encoder, the zero convolutions and the conditioning encoder), the UNet, the text encoder and
the VAE stay frozen. The family feeds the condition and drops half of the prompts.
"""

from baselines._common import train_only
from bench.method import Method


class ControlNet(Method):
    name = "controlnet"
    families = frozenset({"controlnet"})
    groups = ("controlnet",)
    parameter_efficient = True  # lists `controlnet+diff-tuning` (bench.registry.composed_names)
    summary = "train the ControlNet only; the text-to-image model stays frozen"
    reference = "Zhang, Rao, Agrawala, Adding Conditional Control to Text-to-Image Diffusion Models, ICCV 2023"

    def prepare(self, model, ctx):
        return train_only(model, ctx, self.name, "controlnet")
