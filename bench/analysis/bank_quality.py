"""Is the source worth retaining? (issue 30, item 2, precondition (a)): the FID of Diff-Tuning's
knowledge bank (the images the method replays, bench/knowledge_bank.py, built and cached exactly as
a run builds it) against the source domain's held-out split, next to the FID of a real held-out
source split of the same size against the same reference (the floor: what a perfect source model
would score at this sample size and extractor).

The source's held-out split is known where the backbone's weights come with a build manifest that
names its source domain (the tiny profile: `bench build-tiny source` writes `source_domain` beside
the weights). Its evaluation split is cut once, by a fixed permutation, into the floor (as many
images as the bank) and the reference (the rest), so the two FIDs share one reference.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bench import provenance
from bench.analysis import result_header
from bench.backbone import load_backbone
from bench.data import synthetic
from bench.errors import BenchError
from bench.features import get_extractor
from bench.features.cache import cached_features, images_sha256
from bench.knowledge_bank import knowledge_bank, source_domain as bank_source_domain
from bench.metrics import fid_from_features
from bench.paths import results_dir
from bench.results import write_json_atomic
from bench.spec import SyntheticDataset, canonical_hash
from bench.tasks import Task

NAME = "bank-quality"
METHOD = "diff-tuning"  # whose bank it is; the folder under analysis/bank-quality/
DATASET = "source"
SPLIT_SEED = 30


def source_domain(task: Task) -> SyntheticDataset:
    return bank_source_domain(task.spec.backbone, f"bank-quality ({task.profile} profile)")


def split_held_out(images: np.ndarray, n_floor: int) -> tuple[np.ndarray, np.ndarray]:
    """(floor, reference): a fixed permutation of the held-out images, its first n_floor and the rest."""
    if n_floor >= len(images):
        raise BenchError(f"bank-quality: the bank has {n_floor} images, the source's held-out split only "
                         f"{len(images)}; the floor and the reference need disjoint images")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(images))
    return images[np.sort(order[:n_floor])], images[np.sort(order[n_floor:])]


def analysis_path(task: Task, config_hash: str, bank_seed: int) -> Path:
    return (results_dir() / task.key / task.profile / "analysis" / NAME / METHOD / config_hash / DATASET
            / f"seed{bank_seed}.json")


def run(task: Task, *, force: bool = False, log=print) -> Path:
    spec = task.spec
    if spec.knowledge_bank is None:
        raise BenchError(f"task {task.name} [{task.profile}] declares no knowledge_bank")
    domain = source_domain(task)
    bank_spec = spec.knowledge_bank
    cfg = canonical_hash({"analysis": NAME, "bank": bank_spec.model_dump(mode="json"),
                          "diffusion": spec.diffusion.key(), "backbone": spec.backbone.model_dump(mode="json"),
                          "source": domain.model_dump(mode="json"), "extractor": spec.evaluation.extractor,
                          "split_seed": SPLIT_SEED})
    path = analysis_path(task, cfg, bank_spec.seed)
    if path.exists() and not force:
        log(f"skip   {path} (complete; --force to redo)")
        return path
    t0 = time.time()
    backbone = load_backbone(spec.backbone)
    backbone.model.eval()
    bank, bank_key = knowledge_bank(backbone, bank_spec, spec.diffusion)
    held = synthetic(domain, "eval", spec.image_size)
    floor, reference = split_held_out(held.images, len(bank))
    extractor = get_extractor(spec.evaluation.extractor)
    ref_f, _ = cached_features(extractor, reference, desc="features (source reference)")
    bank_f, _ = cached_features(extractor, bank, desc="features (bank)")
    floor_f, _ = cached_features(extractor, floor, desc="features (real source split)")
    fid_bank = fid_from_features(bank_f.features, ref_f.features)
    fid_real = fid_from_features(floor_f.features, ref_f.features)
    ratio = fid_bank / fid_real if fid_real > 0 else float("inf")
    log(f"       {task.key} [{task.profile}] bank FID {fid_bank:.4g}, real split of the same size {fid_real:.4g} "
        f"(ratio {ratio:.3g}, gap {fid_bank - fid_real:.4g})")
    result = {
        **result_header(NAME, task, DATASET, METHOD),
        "config_hash": cfg,
        "seed": bank_spec.seed,
        "values": {"fid_bank": fid_bank, "fid_real": fid_real, "fid_gap": fid_bank - fid_real, "fid_ratio": ratio},
        "bank": {"key": bank_key, "n": len(bank), "sha256": images_sha256(bank), "spec": bank_spec.model_dump(mode="json")},
        "real": {"split": "eval", "n": len(floor), "sha256": images_sha256(floor)},
        "reference": {"split": "eval", "n": len(reference), "sha256": images_sha256(reference),
                      "source_domain": domain.model_dump(mode="json"), "split_seed": SPLIT_SEED},
        "provenance": {
            **provenance.git_state(),
            "packages": provenance.package_versions(),
            "device": provenance.device_info(),
            "backbone_sha256": backbone.weights_sha256,
            "extractor": extractor.preprocessing(),
            "wall_time_s": round(time.time() - t0, 3),
        },
    }
    write_json_atomic(path, result)
    log(f"wrote  {path}")
    return path
