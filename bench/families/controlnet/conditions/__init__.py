"""Condition extractors (ControlNet's "annotators"), by name: image -> condition map.

A ControlNet is scored by re-extracting its condition from each generated image and comparing it
with the condition it was given (Diff-Tuning's measure: the MSE of the two maps; plus the usual
per-condition fidelity score). Every extractor turns uint8 NHWC images into condition images,
float32 (n, 3, s, s) in [0, 1], the form a ControlNet is fed, and scores a pair of such maps.

    canny         OpenCV Canny 100/200 (ControlNet's canny annotator)    F1 of edge pixels
    canny-random  Canny with thresholds drawn per image (ControlNet's training maps; paper profile's
                  `train_extractor`, the evaluation keeps canny's fixed 100/200)
    chroma-mask   foreground mask of saturated colour (the tiny source     mIoU (foreground, background)
                  domain's class-agnostic stand-in for SAM masks)
    tiny-sketch   the tiny estimator's line-drawing head                  SSIM
    tiny-depth    the tiny estimator's inverse-depth head                 RMSE on the 0-255 scale
    tiny-normal   the tiny estimator's normal head                        mean angular error (degrees)
    tiny-seg      the tiny estimator's segmentation head                  mIoU
    hed, dpt-depth, normalbae, upernet-seg: the paper profile's annotators (bench/families/controlnet/conditions/annotators.py)

Weights are the project's own (tiny: `bench build-tiny conditions`, pinned by sha256 in the task)
or pinned hub revisions; missing or tampered weights are a clear error, never a fallback.
"""

from __future__ import annotations

import importlib
from typing import ClassVar

import numpy as np

from bench.errors import unknown

EXTRACTORS: dict[str, str] = {
    "canny": "bench.families.controlnet.conditions:Canny",
    "canny-random": "bench.families.controlnet.conditions:RandomCanny",
    "chroma-mask": "bench.families.controlnet.conditions:ChromaMask",
    "tiny-sketch": "bench.families.controlnet.conditions.tiny:TinySketch",
    "tiny-depth": "bench.families.controlnet.conditions.tiny:TinyDepth",
    "tiny-normal": "bench.families.controlnet.conditions.tiny:TinyNormal",
    "tiny-seg": "bench.families.controlnet.conditions.tiny:TinySeg",
    "hed": "bench.families.controlnet.conditions.annotators:HED",
    "dpt-depth": "bench.families.controlnet.conditions.annotators:DPTDepth",
    "normalbae": "bench.families.controlnet.conditions.annotators:NormalBAE",
    "upernet-seg": "bench.families.controlnet.conditions.annotators:UperNetSeg",
}


class ConditionExtractor:
    name: ClassVar[str] = ""
    score_name: ClassVar[str] = ""          # the per-condition fidelity score
    higher_is_better: ClassVar[bool] = True
    weights_sha256: str = "none"             # what `provenance` records

    def __init__(self, weights_sha256: str | None = None):
        pass

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """uint8 (n, s, s, 3) -> float32 condition images (n, 3, s, s) in [0, 1]."""
        raise NotImplementedError

    def score(self, pred: np.ndarray, ref: np.ndarray) -> float:
        """The fidelity score of re-extracted maps `pred` against the input maps `ref`."""
        raise NotImplementedError

    def distance(self, pred: np.ndarray, ref: np.ndarray) -> float:
        """The tracked distance (`mse`, the sudden-convergence measure): the maps' MSE, Diff-Tuning's
        measure. A label map overrides it (the MSE of palette colours says nothing about classes)."""
        return condition_mse(pred, ref)

    def info(self) -> dict:
        return {"name": self.name, "weights_sha256": self.weights_sha256, "score": self.score_name}


def condition_mse(pred: np.ndarray, ref: np.ndarray) -> float:
    """Diff-Tuning's ControlNet measure: the mean squared difference of the two condition maps."""
    return float(np.mean((pred.astype(np.float64) - ref.astype(np.float64)) ** 2))


def binary_f1(pred: np.ndarray, ref: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(ref.reshape(-1) > 0.5, pred.reshape(-1) > 0.5, zero_division=0.0))


def mean_ssim(pred: np.ndarray, ref: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(np.mean([structural_similarity(r[0], p[0], data_range=1.0, win_size=7)
                          for p, r in zip(pred.astype(np.float64), ref.astype(np.float64))]))


def depth_rmse(pred: np.ndarray, ref: np.ndarray) -> float:
    return float(np.sqrt(np.mean((255.0 * (pred[:, 0].astype(np.float64) - ref[:, 0])) ** 2)))


def normal_angle(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean angle in degrees between the decoded unit normals."""
    a, b = pred.astype(np.float64) * 2 - 1, ref.astype(np.float64) * 2 - 1
    a /= np.linalg.norm(a, axis=1, keepdims=True) + 1e-12
    b /= np.linalg.norm(b, axis=1, keepdims=True) + 1e-12
    return float(np.degrees(np.arccos(np.clip((a * b).sum(1), -1, 1))).mean())


def pixel_class_error(pred_classes: np.ndarray, ref_classes: np.ndarray) -> float:
    """The fraction of pixels whose class differs (1 - pixel accuracy)."""
    return float(np.mean(np.asarray(pred_classes) != np.asarray(ref_classes)))


def mean_iou(pred_classes: np.ndarray, ref_classes: np.ndarray) -> float:
    """mIoU over the classes present in either map (sklearn's macro Jaccard)."""
    from sklearn.metrics import jaccard_score

    return float(jaccard_score(ref_classes.reshape(-1), pred_classes.reshape(-1), average="macro", zero_division=0.0))


class Canny(ConditionExtractor):
    name = "canny"
    score_name = "f1"

    def __call__(self, images):
        from bench.data.layouts import binary_to_image, canny

        return binary_to_image(canny(images))

    def score(self, pred, ref):
        return binary_f1(pred[:, 0], ref[:, 0])


class RandomCanny(Canny):
    """Canny with a (low, high) pair drawn per image, for training maps: the ControlNet paper made its
    edge data "with random thresholds" without the range [unsure: its training data code is not
    public]; ours: two integers uniform on 1..255, the low one the smaller (the range of the official
    gradio demo's threshold sliders). Drawn from a generator seeded by (seed, the image's bytes), so
    an image gets the same map whatever batch or order it is extracted in."""

    name = "canny-random"
    seed = 0

    def __call__(self, images):
        import hashlib

        from bench.data.layouts import binary_to_image, canny

        out = []
        for im in np.asarray(images):
            digest = int.from_bytes(hashlib.sha256(im.tobytes()).digest()[:8], "little")
            low, high = sorted(np.random.default_rng([self.seed, digest]).integers(1, 256, 2).tolist())
            out.append(canny(im[None], low, high)[0])
        return binary_to_image(np.stack(out))

    def info(self) -> dict:
        return {**super().info(), "thresholds": "uniform 1..255 per image, sorted", "seed": self.seed}


class ChromaMask(ConditionExtractor):
    """Object masks without a learned segmenter, for the tiny source domain (bench/data/domains/
    shapes.py): its shapes are painted in saturated hues (chroma = max - min of RGB >= 0.6) on grey
    backgrounds (chroma <= 0.2 with the pixel noise), so a threshold between the two recovers each
    painted shape exactly. It stands in for the class-agnostic SAM masks of the corruption paper's
    ControlNet study; on other images it is only a colourfulness mask."""

    name = "chroma-mask"
    score_name = "miou"
    threshold = 0.4

    def __call__(self, images):
        from bench.data.layouts import binary_to_image

        rgb = np.asarray(images, dtype=np.float32) / 255.0
        return binary_to_image((rgb.max(-1) - rgb.min(-1)) > self.threshold)

    def score(self, pred, ref):
        return mean_iou(pred[:, 0] > 0.5, ref[:, 0] > 0.5)


def get_condition_extractor(name: str, weights_sha256: str | None = None) -> ConditionExtractor:
    if name not in EXTRACTORS:
        raise unknown("condition extractor", name, EXTRACTORS)
    module, attr = EXTRACTORS[name].split(":")
    return getattr(importlib.import_module(module), attr)(weights_sha256)
