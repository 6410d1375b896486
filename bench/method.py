"""The method plugin interface, and composition of methods.

A method is a small class: a typed `Config` (pydantic, unknown keys rejected), the task
`families` it supports, and a few hooks that the ONE shared trainer (bench.trainer) calls.
Every hook has a default that does nothing special, so a method overrides only what it changes:

    prepare(model, ctx)             freeze parameters / inject modules (default: train everything)
    trainable_parameters(model)     what the optimizer updates (default: requires_grad ones)
    make_batch(batch, ctx)          edit the batch, e.g. mix in extra data (default: unchanged)
    sample_timesteps(batch, ctx)    per-sample timesteps, or None for uniform (default: None)
    loss(per_sample, batch, ctx)    reduce per-sample losses, or None for the mean (default: None)
    input_noise(noise, batch, ctx)  the noise that builds x_t, or None for the target noise itself
                                    (default: None; DDPM-IP perturbs it, the target stays)
    train_batch(batch, ctx)         the rows this process trains on, just before the forward pass
                                    (default: nothing; CEP reads its per-row delta from them)
    penalty(model, ctx)             a regulariser added to the loss, or None (default: None; BNN's KL)
    state_dict(model)               what a checkpoint holds (default: trainable parameters)
    check_backbone(spec)            plan time: refuse a backbone it cannot adapt, in one BenchError
                                    line (default: nothing beyond its declared `groups`)
    after_step(model, ctx)          after each optimiser step, e.g. projecting parameters back into
                                    their domain (default: nothing; BNN clamps sigma on `.data`)
    diagnostics(model, ctx, probe)  after training, a record of what the method did, kept in the
                                    result's `training.method_diagnostics` (default: None; A3FT: its
                                    gate over training; BNN: its sigmas and how much sampling moves
                                    the loss); `probe(sampled)` is the diffusion loss on the last
                                    batch, weights sampled or not (None when this process ran no step)

`check(task, steps)` runs at plan time (bench.runner.check_run) and refuses a config that cannot
do what it declares on that task (Diff-Tuning: a bank that would never be drawn).

A method declares the backbone module groups it targets (`groups`, e.g. ("blocks",)) and the
extra training data it asks the family for (`needs_data`, e.g. ("knowledge_bank",)); both are
checked at plan time, so a method never reaches into one architecture or one kind of experiment.

Randomness: draw from torch's global RNG. The trainer re-seeds it from (run seed, step) before
every step, which is what makes a resumed run bit-identical to an uninterrupted one.

Data parallelism (bench/distributed.py): `make_batch` and `sample_timesteps` see the global batch;
`train_batch`, `input_noise` and `loss` see this process's contiguous share of its rows. So what a
method draws per row must be a column of the batch (it is sharded with the rows), never state kept
on the method for the whole batch; and a loss over a subset of rows uses `ctx.flag_mean`, which
divides by the subset's size in the global batch (a plain mean over a share would weight the
processes' rows unequally).

Methods never touch sampling, metrics, seeds or output paths; the harness owns those.

Composition `a+b` runs `prepare` and `make_batch` of each part in order (a part with
`prepare_last`, one that converts the layers other parts inject, such as BNN's Bayesian LoRA, prepares
after the others), adds up their `penalty` terms, and takes every other hook from the one part that
overrides it; two parts overriding the same exclusive hook cannot be composed. That one rule makes
`lora+diff-tuning`, `difffit+diff-tuning`, `bnn+dreambooth`, `bnn+lora` ... work without a special
case per pair.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from bench.backbone import Backbone
    from bench.spec import BackboneSpec
    from bench.spec import DatasetSpec


class MethodConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lr: float | None = Field(None, gt=0, description="learning rate; None = the task's")


ANY_FAMILY = "*"
Batch = dict[str, torch.Tensor]  # "x0": clean inputs + the backbone's condition keys; methods may add keys
# A batch column of images whose encoding a family deferred until after sharding ("x0" then holds
# the posterior noise or zeros, of the latents' shape): bench.backbone.base `encode_later`.
DEFERRED_IMAGES = "pixels"


def _no_extra_data(name: str) -> Batch:
    from bench.errors import BenchError

    raise BenchError(f"no extra training data {name!r} is available here")


@dataclass
class TrainContext:
    """What a hook may look at. `extra_data(name)` returns extra training data the family provides
    (e.g. "knowledge_bank": the pre-trained model's own samples), as a batch with the same keys as
    a training batch, built once and cached by the harness on first use."""

    backbone: "Backbone"
    dataset: "DatasetSpec"
    num_timesteps: int
    batch_size: int
    extra_data: Callable[[str], Batch] = _no_extra_data
    extras: dict[str, Any] = field(default_factory=dict)
    # Set by the trainer each step of a data-parallel run: the number of processes, and the global
    # batch's row count ("") and flagged rows per boolean column (DataParallel.counts).
    world: int = 1
    global_counts: dict[str, int] | None = None

    def flag_count(self, batch: Batch, flag: str, value: bool = True) -> int:
        """How many rows of the global batch have boolean column `flag` equal to `value`."""
        if self.global_counts is None:
            n = int(batch[flag].sum())
            return n if value else len(batch[flag]) - n
        n = self.global_counts[flag]
        return n if value else self.global_counts[""] - n

    def flag_mean(self, values: torch.Tensor, batch: Batch, flag: str, value: bool = True) -> torch.Tensor:
        """The mean of per-sample `values` over the rows of the GLOBAL batch whose boolean column
        `flag` equals `value` (Diff-Tuning's bank rows, DreamBooth's class rows). In one process it
        is `values[mask].mean()`; a process holding a share of the rows returns its rows' sum over
        the global count times the number of processes, since DDP averages the processes' gradients."""
        mask = batch[flag] if value else ~batch[flag]
        if self.global_counts is None:
            return values[mask].mean()
        return values[mask].sum() * self.world / self.flag_count(batch, flag, value)  # 0 rows: nan, as mean()


class Method:
    name: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    families: ClassVar[frozenset[str]] = frozenset({"class-transfer"})
    groups: ClassVar[tuple[str, ...]] = ()       # backbone module groups prepare() targets
    needs_data: ClassVar[tuple[str, ...]] = ()   # extra training data asked of the family
    prepare_last: ClassVar[bool] = False         # in a composition, prepare after the other parts
    summary: ClassVar[str] = ""
    reference: ClassVar[str] = ""

    def __init__(self, config: MethodConfig | None = None):
        self.config = config if config is not None else self.Config()

    # -- hooks -----------------------------------------------------------------------------
    def check(self, task, steps: int | None = None) -> None:
        """Plan time: refuse (raise BenchError, one line) a config that cannot do what it declares
        on `task` run for `steps` (None: the task's budget). Default: nothing to check."""
        return None

    def prepare(self, model: torch.nn.Module, ctx: TrainContext) -> torch.nn.Module:
        return model

    def trainable_parameters(self, model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
        return [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def make_batch(self, batch: Batch, ctx: TrainContext) -> Batch:
        return batch

    def sample_timesteps(self, batch: Batch, ctx: TrainContext) -> torch.Tensor | None:
        return None

    def loss(self, per_sample: torch.Tensor, batch: Batch, ctx: TrainContext) -> torch.Tensor | None:
        return None

    def input_noise(self, noise: torch.Tensor, batch: Batch, ctx: TrainContext) -> torch.Tensor | None:
        return None

    def penalty(self, model: torch.nn.Module, ctx: TrainContext) -> torch.Tensor | None:
        return None

    def train_batch(self, batch: Batch, ctx: TrainContext) -> None:
        return None

    def after_step(self, model: torch.nn.Module, ctx: TrainContext) -> None:
        return None

    def diagnostics(self, model: torch.nn.Module, ctx: TrainContext,
                    probe: Callable[[bool], float] | None) -> dict | None:
        """What the method observed about itself or did (A3FT's mean gate, BNN's sigmas), called once
        at the end of training and recorded under the result's `training.method_diagnostics` when
        not None. Observation only: gathering it must not change any number the run reports (a
        probe's draws run under a forked RNG). Default: nothing."""
        return None

    def state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {n: p.detach() for n, p in self.trainable_parameters(model)}

    def load_state_dict(self, model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
        params = dict(model.named_parameters())
        missing = [n for n in state if n not in params]
        if missing:
            raise KeyError(f"checkpoint has parameters the model lacks: {missing[:3]}")
        with torch.no_grad():
            for n, value in state.items():
                params[n].copy_(value)

    def check_backbone(self, spec: "BackboneSpec") -> None:
        return None

    # -- helpers -----------------------------------------------------------------------------
    def supports(self, family: str) -> bool:
        """`families` may hold ANY_FAMILY ("*") for methods that apply to every family (full-ft)."""
        return ANY_FAMILY in self.families or family in self.families

    @property
    def full_name(self) -> str:
        return self.name

    def learning_rate(self, task_lr: float) -> float:
        return self.config.lr if self.config.lr is not None else task_lr

    def config_dict(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")


_EXCLUSIVE = ("trainable_parameters", "sample_timesteps", "loss", "input_noise", "state_dict", "load_state_dict")


def _overrides(method: Method, hook: str) -> bool:
    return getattr(type(method), hook) is not getattr(Method, hook)


class ComposedMethod(Method):
    """`a+b+...`: see the module docstring for the rule."""

    def __init__(self, parts: list[Method]):
        super().__init__(MethodConfig())
        self.parts = parts
        self._owner: dict[str, Method] = {}
        for hook in _EXCLUSIVE:
            owners = [m for m in parts if _overrides(m, hook)]
            if len(owners) > 1:
                names = " and ".join(m.name for m in owners)
                raise ValueError(f"cannot compose {self.full_name}: {names} both override {hook}()")
            if owners:
                self._owner[hook] = owners[0]
        specific = [m.families for m in parts if ANY_FAMILY not in m.families]
        self.families = frozenset.intersection(*specific) if specific else frozenset({ANY_FAMILY})
        self.groups = tuple(dict.fromkeys(g for m in parts for g in m.groups))
        self.needs_data = tuple(dict.fromkeys(d for m in parts for d in m.needs_data))

    @property
    def full_name(self) -> str:
        return "+".join(m.name for m in self.parts)

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.full_name

    def _call(self, hook: str, *args):
        owner = self._owner.get(hook)
        return getattr(owner, hook)(*args) if owner else getattr(super(), hook)(*args)

    def check(self, task, steps=None):
        for m in self.parts:
            m.check(task, steps)

    def prepare(self, model, ctx):
        for m in sorted(self.parts, key=lambda m: m.prepare_last):  # stable: otherwise in order
            model = m.prepare(model, ctx)
        return model

    def check_backbone(self, spec):
        for m in self.parts:
            m.check_backbone(spec)

    def make_batch(self, batch, ctx):
        for m in self.parts:
            batch = m.make_batch(batch, ctx)
        return batch

    def train_batch(self, batch, ctx):
        for m in self.parts:
            m.train_batch(batch, ctx)

    def trainable_parameters(self, model):
        return self._call("trainable_parameters", model)

    def after_step(self, model, ctx):
        for m in self.parts:
            m.after_step(model, ctx)

    def diagnostics(self, model, ctx, probe):
        out = {m.name: d for m in self.parts if (d := m.diagnostics(model, ctx, probe)) is not None}
        return out or None

    def sample_timesteps(self, batch, ctx):
        return self._call("sample_timesteps", batch, ctx)

    def loss(self, per_sample, batch, ctx):
        return self._call("loss", per_sample, batch, ctx)

    def input_noise(self, noise, batch, ctx):
        return self._call("input_noise", noise, batch, ctx)

    def penalty(self, model, ctx):
        terms = [t for t in (m.penalty(model, ctx) for m in self.parts) if t is not None]
        return sum(terms[1:], terms[0]) if terms else None

    def state_dict(self, model):
        return self._call("state_dict", model)

    def load_state_dict(self, model, state):
        return self._call("load_state_dict", model, state)

    def learning_rate(self, task_lr: float) -> float:
        # The part that chooses what trains also chooses its learning rate (DiffFit's 1e-3).
        for m in self.parts:
            if m.config.lr is not None:
                return m.config.lr
        return task_lr

    def config_dict(self) -> dict[str, Any]:
        return {m.name: m.config_dict() for m in self.parts}
