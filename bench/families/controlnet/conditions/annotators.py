"""The paper profile's condition annotators, each from a real library with pinned weights, and the
offline probe of the captioned data the ControlNet family trains on (read by ../data.py).

    hed          controlnet_aux HEDdetector (lllyasviel/Annotators ControlNetHED.pth)      SSIM
    dpt-depth    transformers DPTForDepthEstimation, Intel/dpt-large (ControlNet++'s)       RMSE on 0-255
    normalbae    controlnet_aux NormalBaeDetector (lllyasviel/Annotators)                   angle (degrees)
    upernet-seg  transformers UperNetForSemanticSegmentation, openmmlab/upernet-convnext-small  mIoU (ADE20k);
                 its tracked distance is the pixel class error, not the palette MSE

Nothing here downloads silently at run time in a way that could change the weights: every load
names its repository and revision, and an annotator that cannot be loaded (offline, not cached,
library missing) stops the run before any work with one line that says how to fetch it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from bench.families.controlnet.conditions import (ConditionExtractor, depth_rmse, mean_iou, mean_ssim, normal_angle,
                                                  pixel_class_error)
from bench.errors import BenchError, missing_package
from bench.spec import HubRef

ANNOTATORS = HubRef(repo="lllyasviel/Annotators", revision="main")
DPT = HubRef(repo="Intel/dpt-large", revision="main")
UPERNET = HubRef(repo="openmmlab/upernet-convnext-small", revision="main")
# A fixed colour per ADE20k class (150): the segmentation condition image and its inverse.
ADE_PALETTE = np.random.default_rng(150).integers(0, 256, (150, 3)).astype(np.uint8)


def _fail(what: str, ref: HubRef, exc: Exception, extra: str = "") -> BenchError:
    return BenchError(f"condition extractor {what} cannot load {ref.repo!r} (revision {ref.revision}): "
                      f"{type(exc).__name__}{extra}. Pre-fetch it on a machine with network "
                      f"(`huggingface-cli download {ref.repo} --revision {ref.revision}`) and copy HF_HOME here, "
                      f"or use --profile tiny")


@lru_cache(maxsize=None)
def _aux(detector: str):
    try:
        import controlnet_aux
    except ImportError:
        raise missing_package("controlnet_aux", f"condition extractor {detector}") from None
    try:
        return getattr(controlnet_aux, detector).from_pretrained(ANNOTATORS.repo)
    except Exception as exc:
        raise _fail(detector, ANNOTATORS, exc) from None


@lru_cache(maxsize=None)
def _transformers_model(klass: str, ref: HubRef):
    try:
        import transformers
    except ImportError:
        raise missing_package("transformers", f"condition extractor {klass}") from None

    from bench.backbone.base import hub_reachable

    try:
        proc = transformers.AutoImageProcessor.from_pretrained(ref.repo, revision=ref.revision,
                                                               local_files_only=not hub_reachable())
        model = getattr(transformers, klass).from_pretrained(ref.repo, revision=ref.revision,
                                                             local_files_only=not hub_reachable())
    except Exception as exc:
        raise _fail(klass, ref, exc) from None
    return proc, model.eval()


def _resize(maps: torch.Tensor, size: int) -> torch.Tensor:
    return torch.nn.functional.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)


class _Aux(ConditionExtractor):
    detector = ""

    def __init__(self, weights_sha256=None):
        self.model = _aux(self.detector)
        self.weights_sha256 = f"{ANNOTATORS.repo}@{ANNOTATORS.revision}"

    def __call__(self, images):
        from PIL import Image

        size = images.shape[1]
        out = [np.asarray(self.model(Image.fromarray(im), output_type="pil").convert("RGB").resize((size, size)))
               for im in images]
        return (np.stack(out).astype(np.float32) / 255).transpose(0, 3, 1, 2)


class HED(_Aux):
    name, detector, score_name = "hed", "HEDdetector", "ssim"

    def score(self, pred, ref):
        return mean_ssim(pred[:, :1], ref[:, :1])


class NormalBAE(_Aux):
    name, detector, score_name, higher_is_better = "normalbae", "NormalBaeDetector", "angle_deg", False

    def score(self, pred, ref):
        return normal_angle(pred, ref)


class DPTDepth(ConditionExtractor):
    name, score_name, higher_is_better = "dpt-depth", "rmse", False

    def __init__(self, weights_sha256=None):
        self.proc, self.model = _transformers_model("DPTForDepthEstimation", DPT)
        self.weights_sha256 = f"{DPT.repo}@{DPT.revision}"

    @torch.no_grad()
    def __call__(self, images):
        depth = self.model(**self.proc(images=list(images), return_tensors="pt")).predicted_depth[:, None]
        depth = _resize(depth, images.shape[1])
        lo, hi = depth.amin((1, 2, 3), keepdim=True), depth.amax((1, 2, 3), keepdim=True)
        return ((depth - lo) / (hi - lo).clamp_min(1e-6)).repeat(1, 3, 1, 1).numpy().astype(np.float32)

    def score(self, pred, ref):
        return depth_rmse(pred, ref)


class UperNetSeg(ConditionExtractor):
    name, score_name = "upernet-seg", "miou"

    def __init__(self, weights_sha256=None):
        self.proc, self.model = _transformers_model("UperNetForSemanticSegmentation", UPERNET)
        self.weights_sha256 = f"{UPERNET.repo}@{UPERNET.revision}"

    @torch.no_grad()
    def __call__(self, images):
        logits = self.model(**self.proc(images=list(images), return_tensors="pt")).logits
        classes = _resize(logits, images.shape[1]).argmax(1).numpy()
        return (ADE_PALETTE[classes].astype(np.float32) / 255).transpose(0, 3, 1, 2)

    def score(self, pred, ref):
        return mean_iou(_classes(pred), _classes(ref))

    def distance(self, pred, ref):
        """Pixel class error, not the palette MSE: two classes' colours are arbitrary, so their
        squared difference would weigh confusions by chance (the tiny profile's tiny-seg keeps the
        palette MSE its committed results were measured with)."""
        return pixel_class_error(_classes(pred), _classes(ref))


def _classes(maps: np.ndarray) -> np.ndarray:
    rgb = maps.transpose(0, 2, 3, 1)[..., None, :] * 255.0
    return np.argmin(((rgb - ADE_PALETTE.astype(np.float64)) ** 2).sum(-1), -1)


def missing_dataset(spec) -> str | None:
    """Why a hub dataset cannot be read offline, or None when it is cached (or the hub is reachable)."""
    import os

    from bench.backbone.base import hub_reachable
    from bench.families.controlnet.data import _local_saved

    if _local_saved(spec) is not None:
        return None
    if spec.data_dir:  # a builder (imagefolder, parquet) over local files
        data_dir = os.path.expandvars(spec.data_dir)
        return None if "$" not in data_dir and os.path.isdir(data_dir) else f"dataset folder {spec.data_dir}"
    if hub_reachable():
        return None
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(spec.path, repo_type="dataset", revision=spec.revision, local_files_only=True)
    except Exception:
        return (f"dataset {spec.path} (`huggingface-cli download --repo-type dataset {spec.path} "
                f"--revision {spec.revision}`)")
    return None
