"""What the parameter-efficient baselines share.

Every method here decides *what trains* and nothing else: `prepare()` freezes the backbone,
injects the method's own modules (created on the backbone's device and dtype, drawn from torch's
global RNG, which the trainer seeds beforehand) and marks the method's parameters trainable. The
default `trainable_parameters()` (the `requires_grad` ones) and the default checkpoint state
(trainable parameters by name) then need no override, which is what lets any of them compose with
`diff-tuning` (which changes *how* the model trains) under bench.method's one composition rule.

Injected tensors are registered as named parameters of the model (never kept on the method
object), so a fresh process that runs `prepare()` again finds them by name when it loads a
checkpoint, and sampling sees them because they live in the model.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from bench.errors import BenchError
from bench.method import Method


class ParameterEfficientMethod(Method):
    """Base of the baselines that train a small subset (or a small addition) of the backbone.

    `parameter_efficient` is what bench.registry.composed_names() looks for when it lists
    `X+diff-tuning`; methods outside the repo can set it too."""

    parameter_efficient: ClassVar[bool] = True
    families = frozenset({"class-transfer"})


def reference_tensor(model: torch.nn.Module) -> torch.Tensor:
    """Any backbone parameter: new parameters take its device and dtype (meta included, which is
    how bench.params counts parameters of a DiT-XL-2 without its weights)."""
    return next(model.parameters())


def freeze(model: torch.nn.Module) -> None:
    model.requires_grad_(False)


def unfreeze(params) -> None:
    for p in params:
        p.requires_grad_(True)


def group_parameters(ctx, group: str) -> list[torch.nn.Parameter]:
    """Parameters of a backbone module group (deduplicated, in module order)."""
    seen: dict[int, torch.nn.Parameter] = {}
    for module in ctx.backbone.group(group):
        for p in module.parameters():
            seen.setdefault(id(p), p)
    return list(seen.values())


def train_only(model: torch.nn.Module, ctx, method: str, *groups: str) -> torch.nn.Module:
    """Mark the model prepared by `method`, freeze it, and make the named backbone groups trainable."""
    mark_prepared(model, method)
    freeze(model)
    for group in groups:
        unfreeze(group_parameters(ctx, group))
    return model


def append_rows(batch: dict, rows: dict, pick: torch.Tensor, flag: str, fill: dict | None = None) -> dict:
    """`batch` with rows `pick` of the extra data `rows` appended under every key of the batch, and
    a boolean `flag` column that marks them (Diff-Tuning's bank rows, DreamBooth's class images).
    A column the extra data lacks (a method's per-row draw, e.g. CEP's delta) takes its appended
    rows from `fill`; without one it is an error, not a silent misalignment."""
    n = len(batch["x0"])
    missing = [key for key in batch if key not in rows and key not in (fill or {})]
    if missing:
        raise BenchError(f"the {flag} rows have no column(s) {missing} that this batch has (a method composed "
                         f"before the one adding them drew per-row values); compose it after")
    out = {key: torch.cat([value, rows[key][pick] if key in rows else fill[key]]) for key, value in batch.items()}
    out[flag] = torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(len(pick), dtype=torch.bool)])
    return out


def mark_prepared(model: torch.nn.Module, method: str) -> None:
    """Injecting twice would stack hooks; fail loudly instead."""
    done = getattr(model, "_bench_injected", set())
    if method in done:
        raise BenchError(f"method {method!r} was already applied to this model")
    model._bench_injected = done | {method}
