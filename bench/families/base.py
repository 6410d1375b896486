"""The family interface: everything that is specific to one kind of experiment.

The runner (bench/runner.py) owns what every run shares: planning, result keys, skip and resume,
the shared trainer, provenance and the atomic write. A family owns the rest, for one task dataset:

    Params                   its typed section `params` of the task spec (unknown keys rejected)
    check(task)              plan-time validation of the task (datasets, backbone, metrics)
    load_data()              the training and reference data; returns their sha256 (run identity)
    bind(backbone)           the loaded backbone, before training
    train_spec(method)       the training budget for a method (default: the task's; few-shot: the
                             paper's per-method steps and learning rate)
    start(seed)              the run's seed, before training (seed-dependent data, e.g. a corruption draw)
    draw_batch(train_spec)   one training batch: "x0" (denoiser space) + the backbone's cond_keys,
                             drawn from torch's global RNG (the trainer seeds it per step); a family
                             whose methods add no rows may defer the autoencoder to after sharding
                             (`Backbone.encode_later`: pretrain-corruption)
    extra(name)              extra training data it offers methods (`provides`), e.g. Diff-Tuning's
                             knowledge bank or DreamBooth's class images: a batch of rows with the
                             same keys as a training batch, built once and cached
    tracking_spec(steps)     how this run is tracked (default: the task's `tracking`)
    track(seed)              the tracked metrics (`trackable`) on a fixed evaluation set
    tracking_rules()         the detection rules applied to the tracked curves (default: the task's)
    evaluate(method, seed)   final sampling and metrics: {"metrics", "samples", "reference", ...}
    tiny_assets              the tiny profile's weights only it uses (`bench build-tiny NAME`)
    smoke_overrides(task)    what `bench run --smoke` shrinks (sample counts, banks, grids), as task overrides
    report                   its LEADERBOARD section, tables and figures (a StudyReport)

A built-in family is one folder, bench/families/<name>/: the Family class in `__init__.py`, and
beside it whatever only it uses (data generators, evaluators, tiny-asset builders, `report.py`).
What several families share stays in the core (bench/families/batches.py, bench/data/, ...); a
family never imports another family.

A method asks for extra data by name (`Method.needs_data`); a name the family does not provide is
a plan-time error, so every family offers extra data through this one mechanism.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict

from bench.errors import BenchError

if TYPE_CHECKING:
    from bench.backbone import Backbone
    from bench.method import Batch, Method
    from bench.spec import TrainSpec
    from bench.tasks import Task


def random_images(data, batch_size: int, spec: "TrainSpec") -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, images) of a random training batch with the task's horizontal flips, drawn from
    torch's global RNG in a fixed order (the trainer seeds it per step)."""
    idx = torch.randint(0, len(data), (batch_size,))
    images = data.tensor(idx)
    if spec.hflip:
        flip = torch.rand(batch_size) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    return idx, images


def refuse_missing_inputs(task: "Task", probes) -> None:
    """Run every probe (a callable that raises BenchError when an input from outside is missing:
    weights, annotators, datasets) and raise ONE line naming all of them, not just the first."""
    problems = []
    for probe in probes:
        try:
            probe()
        except BenchError as err:
            problems.append(str(err))
    if problems:
        raise BenchError(f"task {task.name} ({task.profile}) cannot start: " + "; ".join(dict.fromkeys(problems)))


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Family:
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams
    backbones: ClassVar[frozenset[str]] = frozenset()        # backbone kinds it works with
    provides: ClassVar[dict[str, str]] = {}                   # extra data name -> what it is
    trackable: ClassVar[dict[str, str]] = {}                  # tracked metric -> what it is
    default_tracked: ClassVar[tuple[str, ...]] = ()
    default_track_samples: ClassVar[int] = 256
    # True: check() itself runs the backbone's preflight and names every missing input (weights,
    # annotators, datasets) in one line, so the runner calls it before the preflight.
    checks_inputs_together: ClassVar[bool] = False
    # The tiny profile's assets only this family uses (`bench build-tiny NAME`): name -> "module:function",
    # a function taking (steps, batch_size, lr, log) keywords that writes the weights and their manifest.
    tiny_assets: ClassVar[dict[str, str]] = {}
    # Its report sections and figures (bench/report/study.py: a StudyReport), as "module:attribute";
    # None: the generic tables and figures only.
    report: ClassVar[str | None] = None
    # Head-to-head comparisons its papers make between two methods on its generic tables, as
    # (method, against, metric): a verdict and a tracked-step table beside the comparisons with
    # full fine-tuning (bench/report/head_to_head.py).
    head_to_head: ClassVar[tuple[tuple[str, str, str], ...]] = ()
    # `bench run --smoke` (task setting `smoke: true`): this many training steps, and evaluation
    # shrunk by `smoke_overrides` to at most this many samples and sampler steps, so a first run
    # finishes in seconds (its numbers are no measurement: reports leave smoke runs out).
    smoke_steps: ClassVar[int] = 2
    smoke_samples: ClassVar[int] = 32
    smoke_sampler_steps: ClassVar[int] = 5

    def __init__(self, task: "Task", dataset: str):
        self.task = task
        self.spec = task.spec
        self.dataset_key = dataset
        self.dataset = task.spec.datasets[dataset]
        self.params = self.parse_params(task)
        self.backbone: "Backbone | None" = None

    # -- plan time ------------------------------------------------------------------------------
    @classmethod
    def parse_params(cls, task: "Task") -> BaseModel:
        from pydantic import ValidationError

        try:
            return cls.Params.model_validate(task.spec.params or {})
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise BenchError(f"task {task.name} ({task.profile}): params.{where}: {first['msg']} "
                             f"(family {cls.name!r} keys: {', '.join(cls.Params.model_fields) or 'none'})") from None

    @classmethod
    def resolve(cls, task: "Task", method_name: str) -> "Task":
        """The task a run of `method_name` really runs. A family may derive task settings from its
        params (pretrain-corruption's published-weights mode sets the weights and a zero budget);
        it must apply them as task overrides, so the result records what ran and is keyed apart.
        Default: the task unchanged."""
        return task

    @classmethod
    def smoke_overrides(cls, task: "Task") -> dict[str, Any]:
        """The task overrides of a smoke run (`smoke: true`): every sample count, sampler and bank
        this family's evaluation reads, shrunk so that a run takes seconds. The planner applies
        them as task overrides (so a smoke run is keyed apart and records what it ran); keys the
        user set are left alone. A family extends this with its own (a guidance grid, prompts)."""
        spec, n = task.spec, cls.smoke_samples
        out: dict[str, Any] = {
            "sampling.num_samples": min(spec.sampling.num_samples, n),
            "sampling.steps": min(spec.sampling.steps, cls.smoke_sampler_steps),
        }
        for key, ds in spec.datasets.items():
            if ds.num_samples is not None:  # a dataset's own count wins over sampling.num_samples
                out[f"datasets.{key}.num_samples"] = min(ds.num_samples, n)
        ev = spec.evaluation
        if "kid" in ev.metrics:
            out["evaluation.kid_subset_size"] = min(ev.kid_subset_size, n // 2)
            out["evaluation.kid_subsets"] = min(ev.kid_subsets, 5)
        if "ewc" in ev.metrics:
            out["evaluation.ewc_samples"] = min(ev.ewc_samples or 256, 16)
        if spec.knowledge_bank is not None:
            out["knowledge_bank.num_images"] = min(spec.knowledge_bank.num_images, 16)
            out["knowledge_bank.steps"] = min(spec.knowledge_bank.steps, cls.smoke_sampler_steps)
        if spec.tracking is not None:
            out["tracking.num_samples"] = min(spec.tracking.num_samples or cls.default_track_samples, 16)
        return out

    @classmethod
    def check(cls, task: "Task") -> None:
        """Validate the task for this family before any work; raise BenchError with one line."""
        kind = task.spec.backbone.kind
        if cls.backbones and kind not in cls.backbones:
            raise BenchError(f"family {cls.name!r} works with backbone kinds {sorted(cls.backbones)}, "
                             f"the task names {kind!r}")
        if task.spec.backbone.init is not None:
            from bench.backbone import adapter_class

            adapter_class(kind).check_init(task.spec.backbone.init)
        if task.spec.sampling.clip_denoised and task.spec.sampling.scheduler not in ("ddpm", "ddim"):
            raise BenchError(f"sampling.clip_denoised clamps the predicted x0 of the ddpm and ddim samplers; "
                             f"{task.spec.sampling.scheduler!r} has no such step")
        cls.parse_params(task)
        tracking = task.spec.tracking
        if tracking is not None:
            names = tracking.metrics or list(cls.default_tracked)
            bad = [m for m in names if m not in cls.trackable]
            if bad or not names:
                raise BenchError(f"family {cls.name!r} cannot track {bad or 'nothing'}; it tracks: "
                                 f"{', '.join(cls.trackable) or 'no metric'}")
            for rule in tracking.rules:
                if rule.metric not in names:
                    raise BenchError(f"tracking rule {rule.kind!r} reads metric {rule.metric!r}, which is not "
                                     f"tracked (tracked: {', '.join(names)})")

    @classmethod
    def check_evaluation(cls, task: "Task") -> None:
        """The task's metrics exist and their extractors load (fails now, not after training)."""
        from bench.evaluate import check_metric_names, extractors_needed
        from bench.features import get_extractor

        ev = task.spec.evaluation
        check_metric_names(ev.metrics)
        for name in extractors_needed(ev.metrics, ev.extractor, ev.metric_extractors):
            get_extractor(name)

    # -- run time -------------------------------------------------------------------------------
    def load_data(self) -> dict[str, str]:
        """The dataset's training split and the reference split the samples are scored against
        (`evaluation.reference`); families with other data override this."""
        from bench.data import load_split

        size = self.spec.image_size
        self.train_set = load_split(self.dataset, "train", size)
        self.ref_set = load_split(self.dataset, "train" if self.spec.evaluation.reference == "train" else "eval", size)
        return {"train": self.train_set.sha256(), "reference": self.ref_set.sha256()}

    def bind(self, backbone: "Backbone") -> None:
        self.backbone = backbone

    def train_spec(self, method: "Method") -> "TrainSpec":
        return self.spec.train

    def start(self, seed: int) -> None:
        pass

    def draw_batch(self, train: "TrainSpec") -> "Batch":
        raise NotImplementedError

    def extra(self, name: str) -> "Batch":
        raise BenchError(f"family {self.name!r} provides no extra training data {name!r} "
                         f"(it provides: {', '.join(self.provides) or 'none'})")

    def tracked_metrics(self) -> list[str]:
        t = self.spec.tracking
        return list(t.metrics or self.default_tracked) if t else []

    def tracking_spec(self, steps: int):
        """How this run is tracked, given its step budget (default: the task's `tracking`)."""
        return self.spec.tracking

    def track_samples(self) -> int:
        """The size of the tracked evaluation set (recorded with the curve)."""
        return self.spec.tracking.num_samples or self.default_track_samples

    def tracking_rules(self) -> list:
        """The detection rules applied to the tracked curves: the task's, or the family's own
        (a ControlNet condition's declared threshold)."""
        return list(self.spec.tracking.rules) if self.spec.tracking is not None else []

    def track(self, seed: int) -> dict[str, float]:
        """The tracked metrics now; a value under a key `artifact:NAME` (e.g. a PNG strip of the
        generated images) is kept beside the curve for figures, not plotted."""
        raise NotImplementedError

    def calibration_track(self, k: int) -> dict[str, float]:
        """The tracked metrics on the family's calibration evaluation set -- pairs or prompts that
        no reported curve uses -- with the k-th calibration sampling seed (bench/calibration.py):
        one of the K independent re-evaluations of a fixed checkpoint that measure its noise."""
        raise BenchError(f"family {self.name!r} has no calibration evaluation set (Family.calibration_track)")

    def calibration_set(self) -> str:
        """In words: which evaluation set `calibration_track` uses, recorded in the calibration file."""
        return ""

    def evaluate(self, method: "Method", seed: int) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def num_samples(self) -> int:
        """Samples to score: the dataset's own count where it declares one (A3FT: 10k/5k/1.4k)."""
        return self.dataset.num_samples or self.spec.sampling.num_samples

    def score(self, images, metrics: list[str] | None = None, gen_labels=None) -> tuple[dict, dict]:
        """The task's metrics (or `metrics`) of generated uint8 images against the reference split;
        class labels are passed on when the samples have them. Returns (metrics, extractor info)."""
        from bench.evaluate import evaluate_images

        ev = self.spec.evaluation if metrics is None else self.spec.evaluation.model_copy(update={"metrics": metrics})
        return evaluate_images(images, self.ref_set.images, ev, gen_labels=gen_labels,
                               ref_labels=self.ref_set.labels if gen_labels is not None else None)

    def outcome(self, images, metrics: dict, extractors: dict, sampling_seed: int) -> dict[str, Any]:
        """What `evaluate` returns: the metrics and what they were computed from."""
        from bench.features.cache import images_sha256

        return {
            "metrics": metrics,
            "samples": {"n": len(images), "sha256": images_sha256(images), "sampling_seed": sampling_seed},
            "reference": {"split": self.spec.evaluation.reference, "n": len(self.ref_set),
                          "sha256": self.ref_set.sha256()},
            "extractors": extractors,
        }

    def provenance(self) -> dict[str, Any]:
        """Family-specific provenance (e.g. the knowledge bank's key)."""
        return {}
