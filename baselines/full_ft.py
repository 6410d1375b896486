"""Standard fine-tuning: every parameter of the pre-trained denoiser trains, uniform timesteps,
plain epsilon loss. The reference row of every table."""

from bench.method import ANY_FAMILY, Method


class FullFineTuning(Method):
    name = "full-ft"
    summary = "all parameters train; uniform timesteps; epsilon loss"
    reference = "standard fine-tuning (baseline)"
    families = frozenset({ANY_FAMILY})  # training everything applies to every family
