"""Pre-training with no intervention: every parameter trains on the source data as given (clean,
or label-corrupted by the task's `params.eta`). The reference row of the corruption study."""

from bench.method import Method


class Clean(Method):
    name = "clean"
    summary = "no intervention: train every parameter on the data as given (corrupted or not)"
    reference = "Chen et al. 2024, the clean / corrupted pre-training runs"
    families = frozenset({"pretrain-corruption"})
