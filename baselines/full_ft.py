"""Standard fine-tuning: every parameter of the pre-trained denoiser trains, uniform timesteps,
plain epsilon loss. The reference row of every table."""

from bench.method import Method


class FullFineTuning(Method):
    name = "full-ft"
    summary = "all parameters train; uniform timesteps; epsilon loss"
    reference = "standard fine-tuning (baseline)"
    families = frozenset({"class-transfer", "controlnet", "few-shot", "pretrain-corruption"})
