"""pretrain-corruption: pre-training a class-conditional denoiser from scratch on source data whose
labels are partly corrupted, scored over a grid of guidance scales (Chen et al., "Slight
Corruption in Pre-training Data Makes Better Diffusion Models", 2024; shared notes families.md 3).

- data: the labelled source split; a fraction `params.eta` (percent) of (image, label) pairs gets its
  label replaced by a class drawn from the class prior (the empirical label distribution, so the
  replacement can be the true class: `changed_fraction` records how many really changed).
  `corruption: fixed` draws the corrupted pairs and their labels once per (dataset, seed) and keeps
  them for the whole run (the run records the realised fraction and the hash of the label list);
  `random` redraws them at every draw of a pair. Batches are drawn with replacement, so there are
  no epoch boundaries to redraw at; a pair is drawn about once per epoch, so a per-draw redraw is
  the per-epoch redraw of the paper's "random" corruption;
- batches: images with flips, the (corrupted) labels, classifier-free-guidance label dropout, and
  `index` (the pair's position in the training set, for per-pair methods such as fixed CEP);
- evaluation: `sampling.num_samples` class-balanced samples at every scale of
  `params.guidance_scales`, from the same noise at every scale (paired), each scored with the task's
  metrics against the held-out reference split plus two nearest-training-image measures
  (`mem_ratio`, `top5_l2`, bench.metrics.diversity); the run's `metrics` are those of the scale
  with the lowest `params.select_by` (the paper reports each model at its best guidance), the whole
  grid is kept under `guidance`;
- tracking: FID and IS of a fixed class-balanced set at `params.track_guidance` (the paper's FID/IS
  over pre-training iterations).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from bench.errors import BenchError
from bench.families.base import Family, random_images
from bench.families.batches import label_dropout
from bench.spec import Strict, TrainSpec

SAMPLING_SEED, TRACKING_SEED = 10_000, 20_000  # + the run's seed; the same noise at every scale
CORRUPTION_STREAM = 30_000                      # + the run's seed: the fixed corruption's draw


class PublishedModel(Strict):
    """One released model (a diffusers DiTPipeline repository): its transformer, and the autoencoder
    shipped beside it, which is the one its samples are decoded with."""

    repo: str
    revision: str | None = Field(None, description="the full commit hash (40 hex digits) of the release; a "
                                                   "branch such as 'main' is refused (it moves). None: not "
                                                   "pinned yet, refused at planning (a local folder needs none)")
    subfolder: str | None = "transformer"
    vae_subfolder: str = Field("vae", description="the release's own autoencoder, in the same repository")


COMMIT = re.compile(r"[0-9a-f]{40}")


def pinned_revision(eta: str, ref: PublishedModel) -> str:
    """The revision a published model is loaded at: its full commit hash, or (a local folder, which
    has no revisions) 'main'; anything else is refused in one line."""
    if ref.revision is not None and COMMIT.fullmatch(ref.revision):
        return ref.revision
    if ref.revision is None and Path(ref.repo).is_dir():
        return "main"
    raise BenchError(f"params.published[{eta!r}] ({ref.repo}) is not pinned (revision "
                     f"{ref.revision or 'unset'}): write the release's full 40-hex commit hash as its `revision` "
                     f"in the task file; a branch moves under the results")


class Params(Strict):
    eta: float = Field(0.0, ge=0, le=100, description="percent of pairs whose label is replaced by a draw "
                                                       "from the class prior")
    corruption: Literal["fixed", "random"] = Field("fixed", description="fixed: drawn once per dataset and seed; "
                                                                        "random: redrawn at every draw of a pair")
    guidance_scales: list[float] = Field([1.0], min_length=1, description="classifier-free guidance grid")
    select_by: Literal["fid", "sfid"] = Field("fid", description="the grid point a run reports (lowest value)")
    track_guidance: float = Field(1.0, ge=1.0, description="guidance of the tracked FID/IS curve")
    memorization_threshold: float | None = Field(
        None, gt=0, description="mem_ratio's L2 threshold on unit features (paper: 0.12 on CLIP ViT-B/16); "
                                "None: the memorization_quantile of held-out images' nearest-training distances")
    memorization_quantile: float = Field(0.01, gt=0, lt=1)
    memorization_extractor: str | None = Field(None, description="features of mem_ratio and top5_l2 (paper: "
                                                                 "clip-b16); None: the task's extractor")
    weights: Literal["trained", "published"] = Field(
        "trained", description="trained: pre-train from scratch here; published: no training, evaluate the "
                               "released model of this eta from `published` (keyed apart by this override)")
    published: dict[str, PublishedModel] = Field({}, description="eta as written ('0', '2.5', ...) -> the "
                                                                 "authors' released model pre-trained at that "
                                                                 "corruption ratio")


# What the published-weights mode sets (as task overrides, so results record it): the release's
# transformer and its own autoencoder at the pinned revision, per-block condition embedders accepted
# (a release trained in diffusers' layout has its own in every block), no from-scratch init, no
# training, no tracking.
PUBLISHED_OVERRIDES = ("backbone.from_scratch", "backbone.pretrained", "backbone.vae", "backbone.per_block_embedders",
                       "backbone.init", "train.steps", "tracking")


def corrupt_labels(labels: np.ndarray, eta_percent: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(new labels, selected mask): each pair is selected with probability eta/100 and its label
    replaced by the label of a uniformly drawn pair, i.e. a draw from the class prior."""
    selected = rng.random(len(labels)) < eta_percent / 100.0
    replacement = labels[rng.integers(0, len(labels), size=len(labels))]
    return np.where(selected, replacement, labels), selected


def labels_sha256(labels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()


class PretrainCorruption(Family):
    name = "pretrain-corruption"
    summary = "class-conditional pre-training from scratch on label-corrupted source data, over guidance"
    report = "bench.families.pretrain_corruption.report:REPORT"
    Params = Params
    backbones = frozenset({"dit", "ldm"})
    trackable = {"fid": "FID of a fixed class-balanced set at params.track_guidance",
                 "is": "Inception Score (the task extractor's logits) of the same set"}
    default_tracked = ("fid", "is")
    default_track_samples = 250

    @classmethod
    def resolve(cls, task, method_name: str):
        """`params.weights: published`: the run loads the released model of its eta instead of
        pre-training (zero steps, no tracking), so users can check the paper's table without
        7 x 400k iterations; only `clean` describes such a run (nothing is trained)."""
        p = cls.parse_params(task)
        if p.weights == "trained":
            return task
        ref = p.published.get(f"{p.eta:g}")
        if ref is None:
            raise BenchError(f"task {task.name} ({task.profile}): no published model for eta={p.eta:g}% "
                             f"(params.published has: {', '.join(p.published) or 'none'})")
        if method_name != "clean":
            raise BenchError(f"params.weights=published evaluates released models without training; run it "
                             f"with --method clean, not {method_name!r}")
        revision = pinned_revision(f"{p.eta:g}", ref)
        transformer = {"repo": ref.repo, "revision": revision, "subfolder": ref.subfolder}
        vae = {"repo": ref.repo, "revision": revision, "subfolder": ref.vae_subfolder}
        return task.with_overrides(dict(zip(PUBLISHED_OVERRIDES, (None, transformer, vae, True, None, 0, None))))

    @classmethod
    def smoke_overrides(cls, task) -> dict:
        """A smoke run scores one guidance scale, not the grid (each point is a full evaluation)."""
        grid = cls.parse_params(task).guidance_scales
        return super().smoke_overrides(task) | {"params.guidance_scales": grid[:1]}

    @classmethod
    def check(cls, task) -> None:
        super().check(task)
        spec = task.spec
        published = cls.parse_params(task).weights == "published"
        if published and (spec.backbone.pretrained is None or spec.train.steps != 0):
            raise BenchError(f"task {task.name}: params.weights=published is applied when a run is planned "
                             f"(Family.resolve); the task as given was not resolved")
        if not published and not spec.backbone.from_scratch:
            raise BenchError(f"task {task.name}: family {cls.name!r} pre-trains from scratch; set "
                             f"backbone.from_scratch: true")
        for key, ds in spec.datasets.items():
            if ds.num_classes is None or ds.num_classes != spec.backbone.num_source_classes:
                raise BenchError(f"task {task.name}: dataset {key!r} must declare num_classes equal to "
                                 f"backbone.num_source_classes ({spec.backbone.num_source_classes})")
        if "ewc" in spec.evaluation.metrics:
            raise BenchError(f"task {task.name}: family {cls.name!r} has no pre-trained model to measure EWC against")
        cls.check_evaluation(task)
        extractor = cls.parse_params(task).memorization_extractor
        if extractor is not None:
            from bench.features import get_extractor

            get_extractor(extractor)  # loads (or fails) now, not after pre-training

    # -- data -------------------------------------------------------------------------------------
    def load_data(self) -> dict[str, str]:
        data = super().load_data()
        self.clean_labels = self.train_set.labels.copy()
        return data

    def start(self, seed: int) -> None:
        """Draw this run's corruption (fixed: once, from the run's seed; random: per draw)."""
        p = self.params
        self._labels = torch.from_numpy(self.clean_labels)
        self._record: dict[str, Any] = {"eta_percent": p.eta, "mode": p.corruption, "num_pairs": len(self.clean_labels),
                                        "prior": "empirical label distribution of the training split"}
        if p.corruption == "fixed":
            rng = np.random.default_rng([seed, CORRUPTION_STREAM])
            labels, selected = corrupt_labels(self.clean_labels, p.eta, rng)
            self._labels = torch.from_numpy(labels)
            self._record.update(selected_fraction=float(selected.mean()),
                                changed_fraction=float((labels != self.clean_labels).mean()),
                                labels_sha256=labels_sha256(labels))
        else:
            self._record.update(clean_labels_sha256=labels_sha256(self.clean_labels), draws=0, selected=0, changed=0)

    def draw_batch(self, train: TrainSpec):
        idx, images = random_images(self.train_set, train.batch_size, train)
        labels = self._labels[idx]
        if self.params.corruption == "random" and self.params.eta > 0:
            selected = torch.rand(len(idx)) < self.params.eta / 100.0
            replacement = self._labels[torch.randint(0, len(self._labels), (len(idx),))]
            new = torch.where(selected, replacement, labels)
            r = self._record  # counts of this process's draws (a resumed run counts from its resume)
            r.update(draws=r["draws"] + len(idx), selected=r["selected"] + int(selected.sum()),
                     changed=r["changed"] + int((new != labels).sum()))
            labels = new
        labels = label_dropout(labels.long(), self.backbone.null_class, train.class_dropout)
        # Encoded after the trainer shards the batch: each data-parallel process runs the
        # autoencoder on its own rows only (the posterior noise is drawn here, for every row).
        return {**self.backbone.encode_later(images), "y": labels.to(self.backbone.device),
                "index": idx.to(self.backbone.device)}

    # -- sampling and scoring ---------------------------------------------------------------------
    def _sample(self, n: int, seed: int, guidance: float) -> tuple[torch.Tensor, torch.Tensor]:
        from bench.sampling import balanced_labels, sample

        s = self.spec.sampling
        labels = balanced_labels(n, self.dataset.num_classes)
        images = sample(self.backbone, labels, diffusion=self.spec.diffusion, scheduler=s.scheduler, steps=s.steps,
                        guidance_scale=guidance, batch_size=s.batch_size, seed=seed, desc=f"sampling g={guidance}",
                        clip_denoised=s.clip_denoised)
        return labels, images

    def track(self, seed: int) -> dict[str, float]:
        n = self.spec.tracking.num_samples or self.default_track_samples
        labels, images = self._sample(n, TRACKING_SEED + seed, self.params.track_guidance)
        metrics, _ = self.score(images, self.tracked_metrics(), gen_labels=labels.numpy())
        return {k: float(v["mean"] if isinstance(v, dict) else v) for k, v in metrics.items()}

    def calibration_track(self, k: int) -> dict[str, float]:
        from bench.calibration import CALIBRATION_SAMPLING_SEED

        n = self.spec.tracking.num_samples or self.default_track_samples
        labels, images = self._sample(n, CALIBRATION_SAMPLING_SEED + k, self.params.track_guidance)
        metrics, _ = self.score(images, self.tracked_metrics(), gen_labels=labels.numpy())
        return {k2: float(v["mean"] if isinstance(v, dict) else v) for k2, v in metrics.items()}

    def calibration_set(self) -> str:
        # A class-conditional FID has no evaluation pairs of its own: what varies between
        # evaluations is the sampling noise, and the reference split is the statistic's target.
        return ("tracking.num_samples class-balanced samples at params.track_guidance with calibration sampling "
                "seeds (disjoint from the tracking and evaluation seeds), scored against the reference split")

    def _train_features(self):
        from bench.features import get_extractor
        from bench.features.cache import cached_features

        ex = get_extractor(self.params.memorization_extractor or self.spec.evaluation.extractor)
        train = cached_features(ex, self.train_set.images, desc="features (training split)")[0].features
        if self.params.memorization_threshold is not None:
            return ex, train, self.params.memorization_threshold, "declared"
        from bench.metrics import nn_threshold

        held_out = cached_features(ex, self.ref_set.images, desc="features (reference)")[0].features
        return ex, train, nn_threshold(held_out, train, self.params.memorization_quantile), \
            f"quantile {self.params.memorization_quantile} of held-out images' nearest-training distances"

    def evaluate(self, method, seed: int) -> dict[str, Any]:
        from bench.features.cache import cached_features, images_sha256
        from bench.metrics import nn_memorization, top_k_l2

        ex, train_feats, threshold, how = self._train_features()
        grid, hashes, extractors = {}, {}, {}
        for g in self.params.guidance_scales:
            labels, images = self._sample(self.num_samples, SAMPLING_SEED + seed, g)
            metrics, extractors = self.score(images, gen_labels=labels.numpy())
            gen = cached_features(ex, images, desc="features (generated)")[0].features
            metrics.update(mem_ratio=nn_memorization(gen, train_feats, threshold), top5_l2=top_k_l2(gen, train_feats))
            grid[g], hashes[g] = metrics, images_sha256(images)
        best = min(grid, key=lambda g: _scalar(grid[g][self.params.select_by]))
        return {
            "metrics": grid[best],
            "samples": {"n": self.num_samples, "sha256": hashes[best], "sampling_seed": SAMPLING_SEED + seed,
                        "sha256_by_guidance": {str(g): h for g, h in hashes.items()}},
            "reference": {"split": self.spec.evaluation.reference, "n": len(self.ref_set)},
            "extractors": extractors,
            "guidance": {"best": best, "select_by": self.params.select_by,
                         "grid": {str(g): m for g, m in grid.items()}},
            "memorization": {"threshold": threshold, "threshold_rule": how, "features": f"L2-normalised {ex.name} "
                             "features", "train_n": len(train_feats)},
        }

    def provenance(self) -> dict[str, Any]:
        record = dict(getattr(self, "_record", {}))
        if record.get("mode") == "random" and record.get("draws"):
            record.update(selected_fraction=record["selected"] / record["draws"],
                          changed_fraction=record["changed"] / record["draws"])
        return {"corruption": record}


def _scalar(v) -> float:
    return float(v["mean"] if isinstance(v, dict) else v)

