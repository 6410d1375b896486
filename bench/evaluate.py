"""Turning generated and reference features into the metrics a task asks for.

Each metric declares which extractor's features it needs (None = the task's extractor) and which
parts of them (features, logits, spatial). `compute_metrics` works from already-extracted
features; `evaluate_images` extracts (through the content-keyed cache) whatever extractors the
requested metrics need, so e.g. `cfid` and `fd_dinov2` can sit next to `fid` in a task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from bench.errors import BenchError, unknown
from bench.features.base import Features
from bench.metrics import (average_pairwise_l2, class_entropy, cmmd, fid_from_features, inception_score, kid,
                           memorization_ratio, precision_recall, top_rmd)
from bench.spec import EvaluationSpec


@dataclass(frozen=True)
class Metric:
    fn: Callable[[Features, Features, EvaluationSpec], Any]
    summary: str
    extractor: str | None = None          # None: the task's extractor
    needs: tuple[str, ...] = ("features",)

    def __call__(self, gen: Features, ref: Features, spec: EvaluationSpec) -> Any:
        for part in self.needs:
            for what, f in (("generated", gen), ("reference", ref)):
                if getattr(f, part) is None:
                    raise BenchError(f"{self.summary} needs {part} from the extractor, which the {what} "
                                     f"features lack")
        return self.fn(gen, ref, spec)


def _kid(gen: Features, ref: Features, spec: EvaluationSpec) -> dict:
    # As clean-fid: subsets of at most the declared size, fewer where a set is smaller (A3FT scores
    # Pokemon's 833 training images with subsets of 1000); the result records the size used.
    size = min(spec.kid_subset_size, len(gen.features), len(ref.features))
    return kid(gen.features, ref.features, subsets=spec.kid_subsets, subset_size=size, seed=0)


def _labels(f: Features) -> np.ndarray:
    # Known class labels if the caller attached them, else the extractor's predicted classes.
    return f.labels if f.labels is not None else f.logits.argmax(1)


def _rmd(gen: Features, ref: Features, spec: EvaluationSpec) -> float:
    if ref.labels is None and ref.logits is None:
        raise BenchError("Top-1% RMD needs reference labels or extractor logits")
    return top_rmd(gen.features, ref.features, _labels(ref), gen.labels)


def _fid(gen: Features, ref: Features, spec: EvaluationSpec) -> float:
    return fid_from_features(gen.features, ref.features)


METRICS: dict[str, Metric] = {
    "fid": Metric(_fid, "FID"),
    "kid": Metric(_kid, "KID"),
    "is": Metric(lambda g, r, s: inception_score(g.logits), "Inception Score", needs=("logits",)),
    "prc": Metric(lambda g, r, s: precision_recall(g.features, r.features, k=3), "precision/recall (k=3)"),
    "sfid": Metric(lambda g, r, s: fid_from_features(g.spatial, r.spatial), "sFID", needs=("spatial",)),
    "cfid": Metric(_fid, "clean-FID", extractor="clean-inception"),
    "fd_dinov2": Metric(_fid, "FD-DINOv2", extractor="dinov2"),
    "cmmd": Metric(lambda g, r, s: cmmd(g.features, r.features), "CMMD", extractor="clip"),
    "rmd": Metric(_rmd, "Top-1% RMD"),
    "entropy": Metric(lambda g, r, s: class_entropy(logits=g.logits), "sample entropy", needs=("logits",)),
    "memorization": Metric(lambda g, r, s: memorization_ratio(g.features, r.features), "memorization ratio"),
    "l2": Metric(lambda g, r, s: average_pairwise_l2(g.features), "average pairwise L2"),
}


# Metrics of the fine-tuned model itself rather than of its samples; the runner computes them.
MODEL_METRICS = {"ewc": "EWC of the tuned parameters against the pre-trained model (diagonal Fisher)"}


def check_metric_names(names: list[str]) -> None:
    for name in names:
        if name not in METRICS and name not in MODEL_METRICS:
            raise unknown("metric", name, [*METRICS, *MODEL_METRICS])


def feature_metric_names(names: list[str]) -> list[str]:
    return [n for n in names if n not in MODEL_METRICS]


def extractor_of(name: str, default: str, overrides: dict[str, str] | None = None) -> str:
    """The extractor a metric reads: the task's override, else the metric's own, else the task's."""
    return (overrides or {}).get(name) or METRICS[name].extractor or default


def extractors_needed(names: list[str], default: str, overrides: dict[str, str] | None = None) -> list[str]:
    check_metric_names(names)
    return list(dict.fromkeys(extractor_of(n, default, overrides) for n in feature_metric_names(names)))


def compute_metrics(gen: Features, ref: Features, spec: EvaluationSpec,
                    other: dict[str, tuple[Features, Features]] | None = None) -> dict[str, Any]:
    """Metrics from features of the task's extractor; `other` maps extractor name -> (gen, ref)
    features for metrics that need another extractor (cfid, fd_dinov2, cmmd)."""
    check_metric_names(spec.metrics)
    out = {}
    for name in feature_metric_names(spec.metrics):
        m, extractor = METRICS[name], extractor_of(name, spec.extractor, spec.metric_extractors)
        if extractor != spec.extractor:
            if not other or extractor not in other:
                raise BenchError(f"metric {name} needs {extractor} features; score with "
                                 f"bench.evaluate.evaluate_images or pass them in `other`")
            out[name] = m(*other[extractor], spec)
        else:
            out[name] = m(gen, ref, spec)
    return out


def evaluate_images(gen_images, ref_images, spec: EvaluationSpec, extractor_kwargs: dict | None = None,
                    gen_labels=None, ref_labels=None) -> tuple[dict[str, Any], dict[str, dict]]:
    """Extract (cached) features for every extractor the metrics need and compute them. Returns
    (metrics, {extractor: {"preprocessing", "reference_cached", "generated_cached"}})."""
    from bench.features import get_extractor
    from bench.features.cache import cached_features

    feats: dict[str, tuple[Features, Features]] = {}
    info: dict[str, dict] = {}
    for name in extractors_needed(spec.metrics, spec.extractor, spec.metric_extractors):
        ex = get_extractor(name, **(extractor_kwargs or {}).get(name, {}))
        ref, ref_hit = cached_features(ex, ref_images, desc=f"{name} features (reference)")
        gen, gen_hit = cached_features(ex, gen_images, desc=f"{name} features (generated)")
        ref.labels, gen.labels = ref_labels, gen_labels
        feats[name] = (gen, ref)
        info[name] = {"preprocessing": ex.preprocessing(), "reference_cached": ref_hit, "generated_cached": gen_hit}
    primary = feats.get(spec.extractor) or next(iter(feats.values()))
    return compute_metrics(*primary, spec, other=feats), info
