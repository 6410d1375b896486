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

from bench.data import ImageSet
from bench.errors import BenchError
from bench.families.base import Family, random_images
from bench.spec import TrainSpec, canonical_hash

# Models, samplers and extractors are imported where used: reports load families only to hash
# their data (stale checks), and should not pay for diffusers and the feature extractors.

EWC_SAMPLES, EWC_SEED = 256, 0
SAMPLING_SEED, TRACKING_SEED = 10_000, 20_000  # + the run's seed; fixed across checkpoints


def labelled_batch(data: ImageSet, backbone, batch_size: int, spec: TrainSpec) -> dict[str, torch.Tensor]:
    """A target batch: random images (with flips), labels with classifier-free-guidance dropout."""
    idx, images = random_images(data, batch_size, spec)
    labels = torch.from_numpy(data.labels[idx.numpy()]).long()
    drop = torch.rand(batch_size) < spec.class_dropout
    labels = torch.where(drop, torch.full_like(labels, backbone.null_class), labels)
    return {"x0": backbone.encode(images), "y": labels.to(backbone.device)}


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
            from bench.knowledge_bank import knowledge_bank

            spec = self.spec
            if spec.knowledge_bank is None:
                raise BenchError(f"task {self.task.name} ({self.task.profile}) declares no knowledge_bank section")
            # A pristine backbone: the one being trained may already carry injected modules.
            pristine = load_backbone(spec.backbone).to(self.backbone.device)
            images, key = knowledge_bank(pristine, spec.knowledge_bank, spec.diffusion)
            x0 = self.backbone.encode(images.permute(0, 3, 1, 2).float().div(127.5).sub(1))
            y = torch.full((len(x0),), self.backbone.null_class, dtype=torch.long, device=x0.device)
            self._bank.update(x0=x0, y=y, key=key, n=len(images))
        return {"x0": self._bank["x0"], "y": self._bank["y"]}

    def _sample(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        from bench.sampling import balanced_labels, sample

        s = self.spec.sampling
        labels = balanced_labels(n, self.dataset.num_classes)
        images = sample(self.backbone, labels, diffusion=self.spec.diffusion, scheduler=s.scheduler, steps=s.steps,
                        guidance_scale=s.guidance_scale, batch_size=s.batch_size, seed=seed)
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

    def ewc(self, method) -> dict | None:
        """EWC of the tuned parameters against the pre-trained backbone (Diff-Tuning's forgetting
        analysis). The diagonal Fisher is taken on the knowledge bank (the pre-trained model's own
        samples, with the null class) and cached per (backbone, bank), so every method of a task is
        measured with the same Fisher. None for methods whose tuned parameters have no pre-trained
        value (e.g. LoRA factors)."""
        from safetensors.torch import load_file, save_file

        from bench.atomic import atomic_write
        from bench.backbone import load_backbone, noise_schedule
        from bench.features.cache import images_sha256
        from bench.metrics.ewc import diagonal_fisher, ewc
        from bench.paths import cache_dir

        pretrained = load_backbone(self.spec.backbone).to(self.backbone.device)
        latents = self.extra("knowledge_bank")["x0"]
        key = canonical_hash({"weights": pretrained.weights_sha256, "bank": images_sha256(latents.cpu()),
                              "n": EWC_SAMPLES, "seed": EWC_SEED})
        path = cache_dir() / "fisher" / f"{key}.safetensors"
        if path.exists():
            fisher = load_file(path)
        else:
            fisher = diagonal_fisher(pretrained.model, noise_schedule(self.spec.diffusion), latents,
                                     null_class=pretrained.null_class, num_samples=min(EWC_SAMPLES, len(latents)),
                                     seed=EWC_SEED)
            with atomic_write(path) as tmp:
                save_file({k: v.contiguous().cpu() for k, v in fisher.items()}, tmp)
        names = [n for n, _ in method.trainable_parameters(self.backbone.model)]
        theta_pre = dict(pretrained.model.named_parameters())
        if not any(n in theta_pre for n in names):
            return None
        out = ewc(fisher, dict(self.backbone.model.named_parameters()), theta_pre, names)
        return out | {"fisher_samples": min(EWC_SAMPLES, len(latents)), "fisher_seed": EWC_SEED,
                      "fisher_data": "knowledge bank"}
