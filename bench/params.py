"""Trainable-parameter accounting on a task's real backbone architecture, without its weights.

`count_parameters(method, backbone_spec)` builds the backbone's diffusers module on the meta
device (shapes only: no memory, no download, a fraction of a second even for DiT-XL-2), runs the
method's own `prepare()` on it exactly as the trainer does, and counts what
`trainable_parameters()` returns. The fraction is over the backbone as loaded (before any module
is injected), which is how the DiffFit paper states its shares.

The paper profile names hub weights rather than an architecture; each backbone adapter pins the
architectures of the hub backbones the suite uses, so counting works offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from typing import TYPE_CHECKING

from bench.backbone import adapter_class
from bench.method import Method, TrainContext
from bench.spec import BackboneSpec

from bench.backbone.dit import DIT_XL_2_256, KNOWN_ARCHITECTURES  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from bench.report.reported import ReportedValue

def reported_shares(task: str) -> dict[str, "ReportedValue"]:
    """The papers' trainable shares (percent) per method for a task, from reference/reported.yaml
    (metric `trainable_percent`), each with its source and confidence."""
    from bench.report.reported import load_reported

    return {r.method: r for r in load_reported() if r.task == task and r.metric == "trainable_percent"}


@dataclass
class ParamCount:
    trainable: int
    backbone: int  # parameters of the backbone as loaded, before the method injects anything

    @property
    def fraction(self) -> float:
        return self.trainable / self.backbone


def architecture(spec: BackboneSpec) -> dict[str, Any]:
    """The diffusers constructor kwargs of a backbone spec (offline)."""
    return adapter_class(spec.kind).architecture(spec)


def build_without_weights(spec: BackboneSpec) -> torch.nn.Module:
    """The backbone's module with every tensor on the meta device (no allocation, no init cost)."""
    return adapter_class(spec.kind).build_without_weights(spec)


def count_parameters(method: Method, spec: BackboneSpec) -> ParamCount:
    adapter = adapter_class(spec.kind)
    model = adapter.build_without_weights(spec)
    backbone_total = sum(p.numel() for p in model.parameters())
    backbone = adapter.wrap_without_weights(model, spec)
    # What prepare() may look at; a method that needs data to decide what trains cannot be counted.
    ctx = TrainContext(backbone=backbone, dataset=None, num_timesteps=0, batch_size=0)  # type: ignore[arg-type]
    model = method.prepare(model, ctx)
    trainable = sum(p.numel() for _, p in method.trainable_parameters(model))
    return ParamCount(trainable, backbone_total)
