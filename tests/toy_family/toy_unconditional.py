"""A toy task family, used by tests/test_families.py and shown in tasks/README.md: unconditional
generation with a class-conditional DiT, every label being the null class. It shows everything a
family writes: its data, its batches, its final evaluation and a tracked metric. The runner,
trainer, result key, resume and provenance come from the harness."""

import torch

from bench.data import load_split
from bench.evaluate import evaluate_images
from bench.families.base import Family
from bench.features.cache import images_sha256
from bench.sampling import sample


class ToyUnconditional(Family):
    name = "toy-unconditional"
    summary = "unconditional generation (every label is the null class)"
    backbones = frozenset({"dit"})
    trackable = {"fid": "FID of a fixed sample set"}
    default_tracked = ("fid",)
    default_track_samples = 16

    def load_data(self):
        self.train_set = load_split(self.dataset, "train", self.spec.image_size)
        self.ref_set = load_split(self.dataset, "eval", self.spec.image_size)
        return {"train": self.train_set.sha256(), "reference": self.ref_set.sha256()}

    def _null(self, n):
        return torch.full((n,), self.backbone.null_class, dtype=torch.long, device=self.backbone.device)

    def draw_batch(self, train):
        idx = torch.randint(0, len(self.train_set), (train.batch_size,))
        return {"x0": self.backbone.encode(self.train_set.tensor(idx)), "y": self._null(train.batch_size)}

    def _generate(self, n, seed):
        s = self.spec.sampling
        return sample(self.backbone, self._null(n), diffusion=self.spec.diffusion, scheduler=s.scheduler,
                      steps=s.steps, guidance_scale=1.0, batch_size=s.batch_size, seed=seed)

    def track(self, seed):
        ev = self.spec.evaluation.model_copy(update={"metrics": ["fid"]})
        images = self._generate(self.spec.tracking.num_samples or self.default_track_samples, seed)
        return {"fid": float(evaluate_images(images, self.ref_set.images, ev)[0]["fid"])}

    def evaluate(self, method, seed):
        images = self._generate(self.spec.sampling.num_samples, seed)
        metrics, extractors = evaluate_images(images, self.ref_set.images, self.spec.evaluation)
        return {"metrics": metrics, "samples": {"n": len(images), "sha256": images_sha256(images)},
                "reference": {"n": len(self.ref_set)}, "extractors": extractors}
