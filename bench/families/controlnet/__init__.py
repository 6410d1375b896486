"""controlnet: train a ControlNet beside a frozen model on one condition (a task dataset is a
condition: edge, sketch, depth, normal, segmentation) and track when it starts to follow that
condition (ControlNet's "sudden convergence"; Diff-Tuning, Zhong et al. 2024, Table 2), or how well
a pre-trained model takes to control (the corruption paper's personalisation study).

- the frozen model is text-to-image (`sd-controlnet`: the prompt is a caption) or class-conditional
  (`dit-controlnet`: the prompt is a class label); the backbone's first condition key says which.
- data: images with their prompts and the condition map of each image. Text, tiny: procedural
  layouts with exact maps (bench/data/layouts.py; edges by OpenCV Canny); text, paper: captioned
  hub images. Class: any labelled dataset of the suite (a synthetic domain or a hub dataset). Maps
  that are not exact come from the condition's extractor (bench/families/controlnet/conditions).
- batches: "x0", the prompt ("input_ids" or "y"; replaced by the null prompt with
  `params.empty_prompt_ratio`, as ControlNet's 50% empty captions) and "control" (the map, 3
  channels in [0, 1]); no flips (a flip would mirror the normals' x component).
- tracking: every K steps, generate from a fixed held-out set of (caption, condition) pairs with
  fixed seeds, re-extract the condition from every generated image with the condition's extractor
  and record the MSE against the input maps (`mse`, the paper's measure) and the condition's
  fidelity score (`fidelity`: Canny F1, sketch SSIM, depth RMSE, normal angle, segmentation mIoU),
  plus a strip of the first generated images for the qualitative figure. The sudden-convergence
  step is the `first_below` rule on `mse` at the condition's declared threshold, held for
  `params.hold` evaluations; the tracker also records how it moves at threshold +-20%.
- evaluation: the same measures on `sampling.num_samples` held-out pairs, and the task's sample
  metrics (FID) of those samples against the held-out images.
- extra data: "knowledge_bank" (Diff-Tuning's retention data, see `extra`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from bench.errors import BenchError
from bench.families.base import Family, refuse_missing_inputs
# Shared with bench build-tiny and other families; still importable from here.
from bench.families.batches import Captioned, prompt_key, text_batch  # noqa: F401
from bench.tracking import decode_png_strip, encode_png_strip  # noqa: F401
from bench.spec import TrainSpec, canonical_hash

SAMPLING_SEED, TRACKING_SEED = 10_000, 20_000  # + the run's seed; fixed across checkpoints


class ConditionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    extractor: str = Field(description="condition extractor (bench.families.controlnet.conditions.EXTRACTORS)")
    threshold: float = Field(gt=0, description="sudden convergence: tracked MSE below this ...")
    caption_column: str | None = Field(None, description="hub data: the caption column (paper profile)")
    train_extractor: str | None = Field(None, description="hub data: the extractor of the training maps (paper "
                                                          "Canny: canny-random, ControlNet's random thresholds); "
                                                          "None = `extractor`, which the evaluation always uses")


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    conditions: dict[str, ConditionSpec] = Field(description="dataset key -> its condition's extractor and threshold")
    hold: int = Field(2, ge=1, description="... for this many consecutive evaluations")
    empty_prompt_ratio: float = Field(0.5, ge=0, le=1, description="prompts (captions or class labels) replaced by "
                                                                   "the null prompt in training")
    estimators_sha256: str | None = Field(None, description="pin of the tiny condition estimators' weights")
    strip_images: int = Field(4, ge=0, description="generated images kept per tracked evaluation (figure)")


@lru_cache(maxsize=8)
def _layouts(n: int, seed: int, split: int, size: int):
    from bench.data.layouts import generate_layouts

    return generate_layouts(n, np.random.default_rng([seed, split]), size)


class ControlNetFamily(Family):
    name = "controlnet"
    summary = "ControlNet beside a frozen text-to-image or class-conditional model: steps to sudden convergence " \
              "per condition, and the controlled model's samples"
    Params = Params
    report = "bench.families.controlnet.report:REPORT"
    tiny_assets = {"conditions": "bench.families.controlnet.conditions.build:build_conditions"}
    backbones = frozenset({"sd-controlnet", "dit-controlnet"})
    provides = {"knowledge_bank": "the frozen model's own samples for training prompts, with the condition "
                                  "extracted from each sample (Diff-Tuning's retention data)"}
    trackable = {"mse": "MSE of the condition re-extracted from generated images against the input condition",
                 "fidelity": "the condition's fidelity score (Canny F1, SSIM, depth RMSE, normal angle, mIoU)"}
    default_tracked = ("mse", "fidelity")
    default_track_samples = 32
    checks_inputs_together = True

    @classmethod
    def check(cls, task) -> None:
        super().check(task)
        params = cls.parse_params(task)
        spec = task.spec
        tracked = spec.tracking.metrics or list(cls.default_tracked) if spec.tracking is not None else []
        if spec.tracking is not None and "mse" not in tracked:
            raise BenchError(f"task {task.name}: family {cls.name!r} detects sudden convergence on the tracked 'mse'; "
                             f"keep it in tracking.metrics")
        if spec.train.hflip:
            raise BenchError(f"task {task.name}: family {cls.name!r} needs train.hflip: false (a flip mirrors "
                             f"the normals' x component and breaks image-condition pairs)")
        from bench.backbone import adapter_class
        from bench.families.controlnet.conditions import EXTRACTORS, get_condition_extractor
        from bench.data.domains import GENERATORS
        from bench.errors import unknown

        text = prompt_key(adapter_class(spec.backbone.kind)) == "input_ids"
        for key, ds in spec.datasets.items():
            if key not in params.conditions:
                raise BenchError(f"task {task.name}: dataset {key!r} has no entry in params.conditions "
                                 f"(its extractor and threshold)")
            gen = ds.synthetic.generator if ds.synthetic is not None else None
            if text and gen is not None and gen != "layouts":
                raise BenchError(f"task {task.name}: a text-to-image ControlNet needs synthetic generator 'layouts' "
                                 f"(captioned scenes with exact condition maps), not {gen!r}")
            if not text and gen is not None and gen not in GENERATORS:
                raise BenchError(f"task {task.name}: a class-conditional ControlNet needs a labelled synthetic "
                                 f"generator ({', '.join(GENERATORS)}), not {gen!r}")
            # the labels are fed to the frozen model as its own class ids: the label spaces must agree
            source = spec.backbone.num_source_classes
            if not text and (ds.num_classes is None or source is None or ds.num_classes > source):
                raise BenchError(f"task {task.name}: dataset {key!r} needs num_classes within the backbone's "
                                 f"num_source_classes ({source}): its labels are the pre-trained model's class ids")
            train_ex = params.conditions[key].train_extractor
            if train_ex is not None and train_ex not in EXTRACTORS:
                raise unknown(f"params.conditions.{key}.train_extractor", train_ex, EXTRACTORS)
            if text and ds.hub is not None and params.conditions[key].caption_column is None:
                raise BenchError(f"task {task.name}: hub dataset {key!r} needs params.conditions.{key}.caption_column")
        # Everything the run needs from outside, gathered into one line: the backbone's weights,
        # each annotator's weights, each hub dataset (offline, all are named, not the first only).

        def dataset_probe(hub):
            def probe():
                from bench.families.controlnet.conditions.annotators import missing_dataset

                gone = missing_dataset(hub)
                if gone:
                    raise BenchError(f"missing {gone}")
            return probe

        hubs = {ds.hub.model_dump_json(): ds.hub for ds in spec.datasets.values() if ds.hub is not None}
        refuse_missing_inputs(task, [
            lambda: adapter_class(spec.backbone.kind).preflight(spec.backbone),
            # every extractor's weights are loaded (and checked) now, not after training
            *[(lambda k=k: get_condition_extractor(params.conditions[k].extractor, params.estimators_sha256))
              for k in spec.datasets],
            *map(dataset_probe, hubs.values())])
        # The data are present: their declared columns (metadata only, no image read) must carry
        # what the family needs, e.g. not phiyodr/coco2017's image URLs, not uncaptioned ADE20K.
        from bench.families.controlnet.data import schema_problem

        for key, ds in spec.datasets.items():
            if ds.hub is not None:
                problem = schema_problem(ds.hub, params.conditions[key].caption_column, labelled=not text)
                if problem:
                    raise BenchError(f"task {task.name}: dataset {key!r}: {problem}")
        cls.check_evaluation(task)

    @property
    def condition(self) -> ConditionSpec:
        return self.params.conditions[self.dataset_key]

    def tracking_rules(self) -> list:
        from bench.tracking_rules import FirstBelow

        spec = self.spec.tracking
        return [FirstBelow(metric="mse", threshold=self.condition.threshold, hold=self.params.hold),
                *(spec.rules if spec is not None else [])]

    # -- data -----------------------------------------------------------------------------------
    def load_data(self) -> dict[str, str]:
        from bench.families.controlnet.conditions import get_condition_extractor

        self.extractor = get_condition_extractor(self.condition.extractor, self.params.estimators_sha256)
        self._raw = self._load_raw()
        return {"train": self._raw["train"][3], "reference": self._raw["eval"][3]}

    def _load_raw(self) -> dict[str, tuple]:
        """(images, captions or class labels, maps, sha256) per split, before tokenising (the
        backbone's tokenizer). Captioned data are layouts or a hub set with a caption column, any
        other dataset is labelled (`check` pairs each with its kind of backbone); decided from the
        data, so that reading data (e.g. the report's staleness check) never imports a model."""
        size = self.spec.image_size
        out = {}
        syn = self.dataset.synthetic
        if (syn is not None and syn.generator != "layouts") or (syn is None and self.condition.caption_column is None):
            from bench.data.load import load_split

            for split in ("train", "eval"):
                data = load_split(self.dataset, split, size)
                maps = self.extractor(data.images)
                out[split] = (data.images, data.labels, maps, _sha(data.images, maps, [str(y) for y in data.labels]))
            return out
        if syn is not None:
            from bench.data.layouts import condition_maps

            for split, n, code in (("train", syn.num_train, 0), ("eval", syn.num_eval, 1)):
                lay = _layouts(n, syn.seed, code, size)
                maps = condition_maps(self.dataset_key, lay).astype(np.float32)
                out[split] = (lay.images, lay.captions, maps, _sha(lay.images, maps, lay.captions))
            return out
        from bench.families.controlnet.data import condition_split

        # The paper's maps come from the annotator itself: computed once per (dataset, revision,
        # split, size, extractor), stored as uint8 and memory-mapped (bench/families/controlnet/data.py).
        train_extractor = self.extractor
        if self.condition.train_extractor is not None:
            from bench.families.controlnet.conditions import get_condition_extractor

            train_extractor = get_condition_extractor(self.condition.train_extractor, self.params.estimators_sha256)
        for split in ("train", "eval"):
            extractor = train_extractor if split == "train" else self.extractor  # fixed thresholds to evaluate
            got = condition_split(self.dataset.hub, split, size, self.condition.caption_column, extractor)
            out[split] = (got.images, got.captions, got.maps, got.sha256)
        return out

    def bind(self, backbone) -> None:
        super().bind(backbone)
        tokenize = backbone.tokenize if prompt_key(backbone) == "input_ids" else None  # class labels as they are
        self.train_set = pairs(*self._raw["train"][:3], tokenize, self._raw["train"][3])
        self.ref_set = pairs(*self._raw["eval"][:3], tokenize, self._raw["eval"][3])
        self._bank: dict[str, Any] = {}

    def draw_batch(self, train: TrainSpec):
        return text_batch(self.train_set, self.backbone, train.batch_size, self.params.empty_prompt_ratio, True)

    # -- generation and the condition measures --------------------------------------------------
    def _generate(self, n: int, seed: int) -> torch.Tensor:
        from bench.sampling import sample

        if n > len(self.ref_set):
            raise BenchError(f"task {self.task.name}: {n} samples asked of {len(self.ref_set)} held-out pairs "
                             f"(raise the dataset's num_eval)")
        s = self.spec.sampling
        cond = {prompt_key(self.backbone): self.ref_set.ids[:n], "control": self.ref_set.maps[:n]}
        return sample(self.backbone, cond, diffusion=self.spec.diffusion, scheduler=s.scheduler, steps=s.steps,
                      guidance_scale=s.guidance_scale, batch_size=s.batch_size, seed=seed,
                      clip_denoised=s.clip_denoised)

    def measure(self, images: torch.Tensor) -> dict[str, float]:
        pred = self.extractor(images.numpy())
        ref = self.ref_set.maps[: len(images)].numpy()
        # "mse" is the extractor's distance: the maps' MSE (Diff-Tuning's measure), except where
        # the map is a label image (paper segmentation: the fraction of pixels of another class).
        return {"mse": self.extractor.distance(pred, ref), "fidelity": self.extractor.score(pred, ref)}

    def track(self, seed: int) -> dict[str, Any]:
        n = self.spec.tracking.num_samples or self.default_track_samples
        images = self._generate(n, TRACKING_SEED + seed)
        out: dict[str, Any] = self.measure(images)
        if self.params.strip_images:
            out["artifact:strip"] = encode_png_strip(images[: self.params.strip_images])
        return out

    def _calibration_pairs(self, n: int) -> Captioned:
        """n held-out (caption, condition) pairs no reported curve or evaluation uses: a fresh layouts
        draw (split code 2; the reported ones are 0 = train, 1 = eval) for synthetic data, else the
        eval pairs after the ones the final evaluation samples."""
        syn = self.dataset.synthetic
        tokenize = self.backbone.tokenize if prompt_key(self.backbone) == "input_ids" else None
        if syn is not None and syn.generator == "layouts":
            from bench.data.layouts import condition_maps

            lay = _layouts(n, syn.seed, 2, self.spec.image_size)
            maps = condition_maps(self.dataset_key, lay).astype(np.float32)
            return Captioned(lay.images, lay.captions, maps, tokenize, _sha(lay.images, maps, lay.captions))
        if syn is not None:  # a labelled synthetic domain: its own calibration stream (bench/data/load.py)
            from bench.data.load import synthetic

            data = synthetic(syn, "calibration", self.spec.image_size, n)
            maps = self.extractor(data.images)
            return Captioned(data.images, data.labels, maps, tokenize,
                             _sha(data.images, maps, [str(y) for y in data.labels]))
        start = self.num_samples
        if len(self.ref_set) < start + n:
            raise BenchError(f"task {self.task.name}: calibration needs {n} held-out pairs beyond the {start} the "
                             f"evaluation samples; the eval split has {len(self.ref_set)}")
        raw = self._raw["eval"]
        return pairs(raw[0][start:start + n], raw[1][start:start + n], raw[2][start:start + n], tokenize, "")

    def calibration_set(self) -> str:
        if self.dataset.synthetic is not None:
            return (f"a fresh {self.dataset.synthetic.generator} draw (split code 2) of tracking.num_samples pairs, "
                    "disjoint from the reported train (0) and eval (1) splits")
        return ("the eval split's pairs after the ones the final evaluation samples (tracking.num_samples of them), "
                "which no reported curve or evaluation uses")

    def calibration_track(self, k: int) -> dict[str, float]:
        from bench.calibration import CALIBRATION_SAMPLING_SEED

        n = self.spec.tracking.num_samples or self.default_track_samples
        saved = self.ref_set
        self.ref_set = self._calibration_pairs(n)
        try:
            return self.measure(self._generate(n, CALIBRATION_SAMPLING_SEED + k))
        finally:
            self.ref_set = saved

    def evaluate(self, method, seed: int) -> dict[str, Any]:
        images = self._generate(self.num_samples, SAMPLING_SEED + seed)
        metrics, extractors = self.score(images)
        measured = self.measure(images)
        metrics.update({"condition_mse": measured["mse"], self.extractor.score_name: measured["fidelity"]})
        out = self.outcome(images, metrics, extractors, SAMPLING_SEED + seed)
        out["condition"] = {"name": self.dataset_key, "threshold": self.condition.threshold, "hold": self.params.hold,
                            "fidelity_score": self.extractor.score_name,
                            "fidelity_higher_is_better": self.extractor.higher_is_better,
                            "extractor": self.extractor.info()}
        return out

    # -- Diff-Tuning's knowledge bank -------------------------------------------------------------
    def extra(self, name: str):
        """The frozen pre-trained model's samples for training captions, each paired with the
        condition the extractor finds in it. The official code has no ControlNet variant; this
        keeps what retention means in the class-conditional case (train on what the pre-trained
        model generates, near the data end) and gives every bank row a condition that its image
        really satisfies, so the retention term never teaches the ControlNet a wrong mapping."""
        if name != "knowledge_bank":
            return super().extra(name)
        if "x0" not in self._bank:
            with torch.random.fork_rng():  # built on first use, mid-step: never shift the step's own draws
                self._build_bank()
        return {k: self._bank[k] for k in ("x0", prompt_key(self.backbone), "control")}

    def _build_bank(self) -> None:
        """Sampled once per (weights, bank spec, captions, extractor) and cached."""
        from bench.atomic import cached_tensors
        from bench.backbone import load_backbone
        from bench.paths import cache_dir
        from bench.sampling import sample

        kb = self.spec.knowledge_bank
        if kb is None:
            raise BenchError(f"task {self.task.name} ({self.task.profile}) declares no knowledge_bank section")
        gen = torch.Generator().manual_seed(kb.seed)
        pick = torch.randint(0, len(self.train_set), (kb.num_images,), generator=gen)
        ids = self.train_set.ids[pick]
        key = canonical_hash({"weights": self.backbone.weights_key, "bank": kb.model_dump(),
                              "diffusion": self.spec.diffusion.key(), "ids": ids.tolist(),
                              "extractor": self.extractor.info()})

        def make():
            from bench.progress import phase

            phase(f"bank   sampling {kb.num_images} images from the frozen model (once; cached)")
            pristine = load_backbone(self.spec.backbone).to(self.backbone.device)
            images = sample(pristine, {prompt_key(pristine): ids}, diffusion=self.spec.diffusion, scheduler=kb.scheduler,
                            steps=kb.steps, guidance_scale=kb.guidance_scale, batch_size=kb.batch_size,
                            seed=kb.seed, desc="knowledge bank")
            return {"images": images, "ids": ids, "control": torch.from_numpy(self.extractor(images.numpy()))}

        bank = cached_tensors(cache_dir() / "knowledge-banks" / f"controlnet-{key}.safetensors", make)
        x0 = self.backbone.encode(bank["images"], batch_size=self.spec.train.batch_size)
        self._bank.update({"x0": x0, prompt_key(self.backbone): bank["ids"], "control": bank["control"], "key": key,
                           "n": len(x0)})

    def provenance(self) -> dict[str, Any]:
        return {"knowledge_bank": {k: v for k, v in self._bank.items() if k in ("key", "n")} or None,
                "condition_extractor": self.extractor.info()}


class StoredCaptioned:
    """`Captioned` over a stored split (bench/families/controlnet/data.py): images and uint8 maps
    memory-mapped, maps turned to float and captions tokenised only for the rows drawn."""

    def __init__(self, images: np.ndarray, captions: list[str], maps: np.ndarray, tokenize, sha256: str = ""):
        from bench.families.controlnet.data import LazyIds, LazyRows

        self._sha256 = sha256
        # copy-on-write memory maps (writable to numpy, so torch shares them without a copy)
        self.images = torch.from_numpy(images if images.flags.writeable else np.array(images))
        self.captions = captions
        self.ids = LazyIds(captions, tokenize) if tokenize is not None else torch.as_tensor(np.asarray(captions))
        self.maps = LazyRows(maps, scale=True)

    def __len__(self) -> int:
        return len(self.images)

    def sha256(self) -> str:
        return self._sha256


def pairs(images, captions, maps, tokenize, sha256: str = ""):
    """In-memory pairs (float maps: layouts, labelled data) or a stored split's (uint8 maps)."""
    if maps.dtype == np.uint8:
        return StoredCaptioned(images, captions, maps, tokenize, sha256)
    return Captioned(images, captions, maps, tokenize, sha256)


def _sha(images: np.ndarray, maps: np.ndarray, captions: list[str]) -> str:
    import hashlib

    h = hashlib.sha256()
    h.update(np.ascontiguousarray(images).tobytes())
    h.update(np.ascontiguousarray(maps).tobytes())
    h.update("\n".join(captions).encode())
    return h.hexdigest()
