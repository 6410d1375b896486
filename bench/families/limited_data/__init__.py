"""limited-data: unconditional fine-tuning of a pre-trained unconditional denoiser on a small
target dataset (a few hundred to a few thousand images; A3FT, Moon et al. 2022, Table 1).

- data: unlabelled images (any labels a dataset has are ignored); the samples are scored against
  `evaluation.reference`, the whole training set in the paper (cFID and KID);
- batches: random training images with horizontal flips; no condition;
- evaluation: `sampling.num_samples` unconditional samples and the task's metrics;
- tracking: any sample metric of the task (default cFID) on a fixed set of samples with fixed noise,
  which draws the fidelity-over-training curve of each method.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.errors import BenchError
from bench.families.base import Family
from bench.families.batches import image_batch  # noqa: F401  (shared; still importable from here)
from bench.spec import TrainSpec

SAMPLING_SEED, TRACKING_SEED = 10_000, 20_000  # + the run's seed; fixed across checkpoints


class LimitedData(Family):
    name = "limited-data"
    summary = "unconditional fine-tuning of a pre-trained unconditional denoiser on ~1000 images"
    backbones = frozenset({"unet2d"})
    trackable = {"cfid": "clean-FID of a fixed set of samples against the reference split",
                 "fid": "FID of a fixed set of samples against the reference split",
                 "kid": "KID of a fixed set of samples against the reference split"}
    default_tracked = ("cfid",)
    default_track_samples = 250
    # A3FT's Table 1 claim: the adapters improve on attention-only fine-tuning (cFID).
    head_to_head = (("a3ft", "attention-ft", "cfid"),)

    @classmethod
    def check(cls, task) -> None:
        super().check(task)
        if task.spec.sampling.guidance_scale != 1.0:
            raise BenchError(f"task {task.name}: family {cls.name!r} is unconditional; sampling.guidance_scale "
                             f"must be 1.0, not {task.spec.sampling.guidance_scale}")
        if "ewc" in task.spec.evaluation.metrics:
            raise BenchError(f"task {task.name}: family {cls.name!r} does not compute ewc")
        cls.check_evaluation(task)

    def draw_batch(self, train: TrainSpec):
        return image_batch(self.train_set, self.backbone, train.batch_size, train)

    def _sample(self, n: int, seed: int) -> torch.Tensor:
        from bench.sampling import sample

        s = self.spec.sampling
        return sample(self.backbone, n, diffusion=self.spec.diffusion, scheduler=s.scheduler, steps=s.steps,
                      guidance_scale=1.0, batch_size=s.batch_size, seed=seed, clip_denoised=s.clip_denoised)

    def track(self, seed: int) -> dict[str, float]:
        n = self.spec.tracking.num_samples or self.default_track_samples
        metrics, _ = self.score(self._sample(n, TRACKING_SEED + seed), self.tracked_metrics())
        return {k: float(v["mean"] if isinstance(v, dict) else v) for k, v in metrics.items()}

    def calibration_set(self) -> str:
        return ("tracking.num_samples fresh unconditional samples per evaluation (calibration sampling seeds), scored "
                "against the same reference as the tracked cFID: the training images, which this metric compares "
                "with by definition (no held-out pairs exist to swap)")

    def calibration_track(self, k: int) -> dict[str, float]:
        from bench.calibration import CALIBRATION_SAMPLING_SEED

        n = self.spec.tracking.num_samples or self.default_track_samples
        metrics, _ = self.score(self._sample(n, CALIBRATION_SAMPLING_SEED + k), self.tracked_metrics())
        return {k2: float(v["mean"] if isinstance(v, dict) else v) for k2, v in metrics.items()}

    def evaluate(self, method, seed: int) -> dict[str, Any]:
        images = self._sample(self.num_samples, SAMPLING_SEED + seed)
        metrics, extractors = self.score(images)
        return self.outcome(images, metrics, extractors, SAMPLING_SEED + seed)
