"""Diff-Tuning (Zhong et al., NeurIPS 2024): transfer along the chain of forgetting.

Two parts, both as in the official code (thuml/Diffusion-Tuning, train.py):
- knowledge retention: a share of every batch (20%; `bank_rows` says how many rows, including
  below one row per batch) is replaced by images from the knowledge bank,
  sampled from the pre-trained model, labelled with the null class (the label spaces differ; the family builds the bank), and
  trained with timesteps drawn with probability proportional to (T+1-t)^tau, i.e. near the data
  end where pre-trained knowledge transfers; their loss is weighted by 0.1;
- reconsolidation: target images get timesteps drawn with probability proportional to t^tau, i.e.
  toward the noise end, where the model must adapt to the new domain.

It edits only the batch, the timesteps and the loss, so it composes with any method that decides
what trains (`lora+diff-tuning`, `difffit+diff-tuning`, `controlnet+diff-tuning`, ...). On the
controlnet family the bank rows carry a caption and the condition extracted from the bank image
(bench/families/controlnet/ says why); the weighting is unchanged.
"""

import math

import torch
from pydantic import Field

from baselines._common import append_rows
from bench.errors import BenchError
from bench.method import Method, MethodConfig


def bank_rows(batch_size: int, ratio: float) -> int:
    """How many of a batch's rows come from the knowledge bank this step.

    floor(batch x ratio) where that is at least one row: the official count (32 x 0.2 -> 6), and
    what every committed result used (tiny profiles: 16 x 0.2 -> 3, 32 x 0.2 -> 6), with no random
    draw, so their numbers stay as they were. Below one row (ControlNet's paper batch of 4 x 0.2 =
    0.8) the floor would silently drop the bank for the whole run; there one row is drawn with
    probability batch x ratio, from torch's global RNG (which the trainer seeds per step from the
    run's seed), so the bank appears in 80% of the steps at batch 4, the declared mean."""
    whole = math.floor(batch_size * ratio)
    if whole >= 1 or ratio == 0:
        return whole
    return int(torch.rand(()) < batch_size * ratio)


def expected_bank_rows(batch_size: int, ratio: float) -> float:
    """The mean of `bank_rows` over steps."""
    whole = math.floor(batch_size * ratio)
    return float(whole) if whole >= 1 else batch_size * ratio


class DiffTuningConfig(MethodConfig):
    tau: float = Field(1.0, ge=0, description="power of the target timestep density t^tau")
    bank_tau: float | None = Field(None, ge=0, description="power for the bank, (T+1-t)^tau; None = tau")
    bank_ratio: float = Field(0.2, ge=0, lt=1, description="share of each batch from the knowledge bank")
    retention_weight: float = Field(0.1, ge=0, description="weight of the bank samples' loss")


class DiffTuning(Method):
    name = "diff-tuning"
    Config = DiffTuningConfig
    summary = "knowledge-bank retention near the data end + reconsolidation toward the noise end"
    reference = "Zhong et al., Diffusion Tuning, NeurIPS 2024 (arXiv 2406.00773)"
    needs_data = ("knowledge_bank",)
    families = frozenset({"class-transfer", "controlnet"})

    def check(self, task, steps: int | None = None) -> None:
        """Plan time: a declared bank must show up in training (one line, before any work)."""
        ratio = self.config.bank_ratio
        if ratio == 0:
            return
        train = task.spec.train
        steps = steps or train.steps
        expected = expected_bank_rows(train.batch_size, ratio) * steps
        if expected < 1:
            raise BenchError(f"diff-tuning: bank_ratio {ratio} at batch {train.batch_size} over {steps} steps draws "
                             f"{expected:.2g} knowledge-bank rows in expectation (under one): the retention term "
                             f"would never train; raise bank_ratio or the batch, or set bank_ratio 0 to declare it off")
        if task.spec.knowledge_bank is None:
            raise BenchError(f"diff-tuning: task {task.name} ({task.profile}) declares no knowledge_bank section, "
                             f"which bank_ratio {ratio} draws from")
        if task.spec.knowledge_bank.oracle:  # the source's data must exist before any work
            from bench.knowledge_bank import source_domain

            if task.file.family != "class-transfer":  # the others build banks of their own kind (captioned, ...)
                raise BenchError(f"diff-tuning: knowledge_bank.oracle is built for class-transfer tasks only; "
                                 f"{task.name} is {task.file.family}")
            source_domain(task.spec.backbone, f"diff-tuning: knowledge_bank.oracle ({task.name}, {task.profile})")

    def make_batch(self, batch, ctx):
        k = bank_rows(ctx.batch_size, self.config.bank_ratio)  # 32 x 0.2 -> 6, as the official code
        size = len(batch["x0"])
        if k == 0:
            return {**batch, "bank": torch.zeros(size, dtype=torch.bool)}
        # The bank has the keys of a training batch (e.g. the null class as "y"), so the last k
        # rows of every key are swapped for bank rows whatever the family's condition is.
        bank = ctx.extra_data("knowledge_bank")
        pick = torch.randint(0, len(bank["x0"]), (k,))
        # A column the bank lacks (a method's per-row draw, CEP's delta) keeps the replaced rows' values.
        kept = {key: value[size - k:] for key, value in batch.items() if key not in bank}
        return append_rows({key: value[: size - k] for key, value in batch.items()}, bank, pick, flag="bank",
                           fill=kept)

    def sample_timesteps(self, batch, ctx):
        T = ctx.num_timesteps
        i = torch.arange(1, T + 1, dtype=torch.float64)  # the code's 1..T, mapped to t = i - 1
        bank_tau = self.config.tau if self.config.bank_tau is None else self.config.bank_tau
        target = torch.multinomial(i**self.config.tau, len(batch["x0"]), replacement=True)
        retain = torch.multinomial((T + 1 - i) ** bank_tau, len(batch["x0"]), replacement=True)
        return torch.where(batch["bank"], retain, target)

    def loss(self, per_sample, batch, ctx):
        # Means over the global batch's target and bank rows (a process may hold a share of them).
        loss = ctx.flag_mean(per_sample, batch, "bank", False)
        if ctx.flag_count(batch, "bank"):
            loss = loss + self.config.retention_weight * ctx.flag_mean(per_sample, batch, "bank")
        return loss
