"""class-transfer: class-conditional fine-tuning of a pre-trained class-conditional denoiser on a
labelled target dataset (dit-transfer: Diff-Tuning Table 1, DiffFit Table 1).

- data: labelled images; target labels reuse the source label-embedding rows 0..K-1 and the null
  class serves classifier-free guidance (as in the official Diff-Tuning code);
- batches: random images with horizontal flips, labels dropped to the null class with
  `train.class_dropout` (once per sample, as the original DiT);
- extra data: `knowledge_bank`, images sampled once from the pre-trained model and labelled with the
  null class (Diff-Tuning's retention data), cached by the hash of weights and bank spec;
- evaluation: `sampling.num_samples` images with class-balanced labels, the task's metrics against
  the reference split, and EWC of the tuned parameters against the pre-trained model;
- tracking: FID on a fixed, class-balanced evaluation set with fixed noise (the convergence curve).
"""

from __future__ import annotations

from typing import Any

import torch

from bench.errors import BenchError
from bench.families.base import Family
# label_dropout and labelled_batch are shared with other families; still importable from here.
from bench.families.batches import label_dropout, labelled_batch  # noqa: F401
from bench.spec import TrainSpec, canonical_hash

# Models, samplers and extractors are imported where used: reports load families only to hash
# their data (stale checks), and should not pay for diffusers and the feature extractors.

EWC_SAMPLES, EWC_SEED = 256, 0
SAMPLING_SEED, TRACKING_SEED = 10_000, 20_000  # + the run's seed; fixed across checkpoints


class ClassTransfer(Family):
    name = "class-transfer"
    summary = "class-conditional transfer of a pre-trained class-conditional denoiser"
    backbones = frozenset({"dit"})
    provides = {"knowledge_bank": "images sampled once from the pre-trained model, labelled with the null class"}
    trackable = {"fid": "FID of a fixed, class-balanced evaluation set against the reference split"}
    default_tracked = ("fid",)
    default_track_samples = 250

    @classmethod
    def check(cls, task) -> None:
        super().check(task)
        spec = task.spec
        if spec.backbone.num_source_classes is None:
            raise BenchError(f"task {task.name}: family {cls.name!r} needs backbone.num_source_classes")
        for key, ds in spec.datasets.items():
            if ds.num_classes is None:
                raise BenchError(f"task {task.name}: dataset {key!r} needs num_classes (family {cls.name!r})")
            if ds.num_classes > spec.backbone.num_source_classes:
                # Target labels reuse the source label-embedding rows 0..K-1 (official Diff-Tuning).
                raise BenchError(f"task {task.name}: dataset {key!r} has {ds.num_classes} classes, more than the "
                                 f"backbone's {spec.backbone.num_source_classes} label-embedding rows")
        cls.check_evaluation(task)

    def bind(self, backbone) -> None:
        super().bind(backbone)
        self._bank: dict[str, Any] = {}

    def draw_batch(self, train: TrainSpec):
        return labelled_batch(self.train_set, self.backbone, train.batch_size, train)

    def extra(self, name: str):
        if name != "knowledge_bank":
            return super().extra(name)
        if "x0" not in self._bank:
            from bench.backbone import load_backbone
            from bench.knowledge_bank import knowledge_bank, oracle_bank

            spec = self.spec
            if spec.knowledge_bank is None:
                raise BenchError(f"task {self.task.name} ({self.task.profile}) declares no knowledge_bank section")
            if spec.knowledge_bank.oracle:  # the source's own training images (ablation)
                images, key = oracle_bank(spec.backbone, spec.knowledge_bank, spec.image_size)
            else:  # a pristine backbone: the one being trained may already carry injected modules
                pristine = load_backbone(spec.backbone).to(self.backbone.device)
                images, key = knowledge_bank(pristine, spec.knowledge_bank, spec.diffusion)
            x0 = self.backbone.encode(images, batch_size=spec.train.batch_size)  # never all at once
            y = torch.full((len(x0),), self.backbone.null_class, dtype=torch.long, device=x0.device)
            self._bank.update(x0=x0, y=y, key=key, n=len(images))
        return {"x0": self._bank["x0"], "y": self._bank["y"]}

    def _sample(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        from bench.sampling import balanced_labels, sample

        s = self.spec.sampling
        labels = balanced_labels(n, self.dataset.num_classes)
        images = sample(self.backbone, labels, diffusion=self.spec.diffusion, scheduler=s.scheduler, steps=s.steps,
                        guidance_scale=s.guidance_scale, batch_size=s.batch_size, seed=seed,
                        clip_denoised=s.clip_denoised)
        return labels, images

    def track(self, seed: int) -> dict[str, float]:
        n = self.spec.tracking.num_samples or self.default_track_samples
        labels, images = self._sample(n, TRACKING_SEED + seed)
        metrics, _ = self.score(images, self.tracked_metrics(), gen_labels=labels.numpy())
        return {k: float(v) for k, v in metrics.items()}

    def evaluate(self, method, seed: int) -> dict[str, Any]:
        labels, images = self._sample(self.num_samples, SAMPLING_SEED + seed)
        metrics, extractors = self.score(images, gen_labels=labels.numpy())
        if "ewc" in self.spec.evaluation.metrics:
            metrics["ewc"] = self.ewc(method)
        return self.outcome(images, metrics, extractors, SAMPLING_SEED + seed)

    def provenance(self) -> dict[str, Any]:
        return {"knowledge_bank": {k: v for k, v in self._bank.items() if k not in ("x0", "y")} or None}

    def fisher_set(self, pretrained) -> tuple[torch.Tensor, torch.Tensor, str]:
        """The data EWC's Fisher is estimated on: `evaluation.ewc_samples` (default EWC_SAMPLES)
        samples of the pre-trained model, in
        its own (latent) space, drawn once with their own seed and labels, the same bytes for every
        method of a dataset. Labels cycle over the source rows the target reuses (0..K-1) and the
        null class, so drift of every label row training touches is visible; the latents come
        straight from the sampler (no VAE encode, no global RNG). Cached by the hash of weights,
        labels and sampler; returns (latents, labels, sha256 of both)."""
        from bench.atomic import cached_tensors
        from bench.backbone import state_sha256
        from bench.paths import cache_dir
        from bench.sampling import sample

        s, k = self.spec.sampling, self.dataset.num_classes
        labels = torch.arange(self.spec.evaluation.ewc_samples or EWC_SAMPLES) % (k + 1)
        labels = torch.where(labels == k, torch.full_like(labels, pretrained.null_class), labels)
        key = canonical_hash({"weights": pretrained.weights_key, "labels": labels.tolist(), "seed": EWC_SEED,
                              "sampler": [s.scheduler, s.steps, s.guidance_scale], "diffusion": self.spec.diffusion.key()})

        def make():
            from bench.progress import phase

            phase(f"ewc    sampling {len(labels)} Fisher-data images from the pre-trained model (once; cached)")
            x0 = sample(pretrained, labels, diffusion=self.spec.diffusion, scheduler=s.scheduler, steps=s.steps,
                        guidance_scale=s.guidance_scale, batch_size=s.batch_size, seed=EWC_SEED, decode=False,
                        desc="EWC Fisher data")
            return {"x0": x0, "y": labels}

        x0 = cached_tensors(cache_dir() / "fisher-data" / f"{key}.safetensors", make)["x0"]
        digest = state_sha256({"x0": x0, "y": labels})
        return x0, labels, digest

    def ewc(self, method) -> dict | None:
        """EWC of the tuned parameters against the pre-trained backbone (Diff-Tuning's forgetting
        analysis; estimator in docs/metrics.md). The diagonal Fisher is taken on `fisher_set`, a
        fixed set of the pre-trained model's own samples that no method trains on (the knowledge
        bank would favour Diff-Tuning, which fits exactly those images), and cached per (backbone,
        set), so every method of a dataset is measured with the same Fisher, recorded by hash.
        None for methods whose tuned parameters have no pre-trained value (e.g. LoRA factors)."""
        from bench.atomic import cached_tensors
        from bench.backbone import load_backbone, noise_schedule
        from bench.metrics.ewc import diagonal_fisher, ewc
        from bench.paths import cache_dir

        pretrained = load_backbone(self.spec.backbone).to(self.backbone.device)
        names = [n for n, _ in method.trainable_parameters(self.backbone.model)]
        theta_pre = dict(pretrained.model.named_parameters())
        if not any(n in theta_pre for n in names):
            return None
        latents, labels, data_sha = self.fisher_set(pretrained)
        key = canonical_hash({"weights": pretrained.weights_key, "data": data_sha, "seed": EWC_SEED})

        def make():
            from bench.progress import phase

            phase(f"ewc    diagonal Fisher of the pre-trained model on {len(latents)} samples (once; cached)")
            return diagonal_fisher(pretrained.model, noise_schedule(self.spec.diffusion), latents, labels=labels,
                                   seed=EWC_SEED)

        fisher = cached_tensors(cache_dir() / "fisher" / f"{key}.safetensors", make)
        out = ewc(fisher, dict(self.backbone.model.named_parameters()), theta_pre, names)
        return out | {"fisher_samples": len(latents), "fisher_seed": EWC_SEED, "fisher_data_sha256": data_sha,
                      "fisher_data": "pre-trained model samples, labels 0..K-1 and null"}
