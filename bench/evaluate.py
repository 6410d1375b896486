"""Turning generated and reference features into the metrics a task asks for."""

from __future__ import annotations

from typing import Any, Callable

from bench.errors import unknown
from bench.features.base import Features
from bench.metrics import fid_from_features, kid
from bench.spec import EvaluationSpec


def _fid(gen: Features, ref: Features, spec: EvaluationSpec) -> float:
    return fid_from_features(gen.features, ref.features)


def _kid(gen: Features, ref: Features, spec: EvaluationSpec) -> dict:
    return kid(gen.features, ref.features, subsets=spec.kid_subsets, subset_size=spec.kid_subset_size, seed=0)


METRICS: dict[str, Callable[[Features, Features, EvaluationSpec], Any]] = {
    "fid": _fid,
    "kid": _kid,
}


def check_metric_names(names: list[str]) -> None:
    for name in names:
        if name not in METRICS:
            raise unknown("metric", name, METRICS)


def compute_metrics(gen: Features, ref: Features, spec: EvaluationSpec) -> dict[str, Any]:
    check_metric_names(spec.metrics)
    return {name: METRICS[name](gen, ref, spec) for name in spec.metrics}
