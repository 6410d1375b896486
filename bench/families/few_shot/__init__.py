"""few-shot: personalise a text-to-image model on N images of one subject (DreamBooth, LoRA) and
track subject fidelity over the steps, to measure the "corruption stage" (Wu et al., seed 000):
fidelity rises, dips with noisy patterns, then recovers into memorisation.

- a task dataset is a subject; `params.num_images` (N) is how many of its images train (swept over
  1, 2, 6 as the paper's Fig. 2). Tiny: procedural objects the source never saw (bench/data/
  subjects.py). Paper: google/dreambooth's subject folders.
- batches: the subject's images with the instance prompt ("a photo of qwe backpack": the rare
  token, then the class word); no flips, batch 1 in the paper; `random_crop` as the official
  scripts (Resize to the short side, RandomCrop), else the centre crop. Hub subjects declare how
  many images they have (`subjects.*.images`), so every N of the sweep is checked at plan time.
- extra data: "class_images", DreamBooth's prior-preservation data: `class_images.per_image` x N
  samples of the class prompt from the pre-trained model, drawn once and cached (as the official
  scripts' --num_class_images=200 per image).
- protocol: the paper trains each base method on its own budget (DreamBooth 200 x N steps at lr
  5e-6, LoRA 400 x N at 1e-4): `params.protocols` maps the method part that decides what trains
  to steps per image and learning rate (`default` for the others); the runner asks `train_spec`.
- tracking: every K steps, generate `images_per_prompt` images for each of the first
  `track_prompts` evaluation prompts with fixed seeds and score them (bench/families/few_shot/fidelity): DINO and
  CLIP-I against the N training images over all pairs (with `subject_region`, the synthetic
  subject's region: its crop against the best window of each generation), CLIP-T against the
  prompt (rare token kept with `clip_t_rare_token`, the official eval; removed otherwise), LPIPS
  between images of the same prompt (diversity), CLIP-IQA. Live subjects (dogs, cats) use
  `live_prompts`, the others `prompts`, as the official test_dreambooth.py. The corruption stage is the
  task's `dip` rule on the DINO curve (onset, recovery, depth, duration; "not reached" if none).
- evaluation: the same measures on every prompt, with the sampling seed.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from bench.errors import BenchError
from bench.families.base import Family, refuse_missing_inputs
from bench.tracking import encode_png_strip
from bench.spec import TrainSpec, canonical_hash

SAMPLING_SEED, TRACKING_SEED = 10_000, 20_000  # + the run's seed; fixed across checkpoints
MEASURES = ("dino", "clip_i", "clip_t", "lpips", "clip_iqa")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SubjectSpec(Strict):
    class_word: str = Field(description="the subject's class (class prompt, prompts' {cls})")
    look: str | None = Field(None, description="tiny: the procedural look (bench/families/few_shot/subjects.py)")
    folder: str | None = Field(None, description="paper: the subject's folder in the hub dataset")
    images: int | None = Field(None, ge=1, description="paper: how many images the folder holds (declared, so "
                                                       "a sweep's N is checked at plan time, before downloads)")
    live: bool = Field(False, description="a live subject (dogs, cats): evaluated on params.live_prompts, as the "
                                          "official test_dreambooth.py")


class Protocol(Strict):
    steps_per_image: int = Field(gt=0, description="training steps = this x N")
    lr: float = Field(gt=0)


class ClassImages(Strict):
    per_image: int = Field(gt=0, description="class images = this x N (official: 200)")
    scheduler: str = "ddim"
    steps: int = Field(gt=0)
    guidance_scale: float = Field(1.0, ge=1.0)
    batch_size: int = Field(gt=0)
    seed: int = 0


class Params(Strict):
    num_images: int = Field(ge=1, description="N, the subject images that train (swept: 1, 2, 6)")
    subjects: dict[str, SubjectSpec] = Field(description="dataset key -> its class word and source")
    rare_token: str = Field(description="the identifier bound to the subject (official scripts: qwe)")
    instance_prompt: str = Field(description="training prompt; {token} and {cls} are filled in")
    class_prompt: str = Field(description="prior-preservation prompt; {cls} is filled in")
    prompts: list[str] = Field(min_length=1, description="evaluation prompts with {token} and {cls}")
    live_prompts: list[str] | None = Field(None, description="evaluation prompts of live subjects (subjects.*.live)")
    clip_t_rare_token: bool = Field(False, description="CLIP-T scores the prompt WITH the rare token (the official "
                                                       "eval metadata); False: removed (tiny: its CLIP has no such "
                                                       "word)")
    subject_region: bool = Field(False, description="DINO and CLIP-I score the subject's region, not the whole image "
                                                    "(synthetic subjects, whose masks are known; fidelity/base.py)")
    random_crop: bool = Field(False, description="training images resized (short side = image_size) and randomly "
                                                 "cropped each step (the official RandomCrop); False: centre crop")
    images_per_prompt: int = Field(ge=2, description="images per prompt (LPIPS pairs them; paper 4)")
    track_prompts: int | None = Field(None, ge=1, description="prompts used when tracking; None = all")
    track_points: int | None = Field(None, ge=2, description="evaluations per run, whatever N (every_steps = "
                                                              "steps / this); None = tracking.every_steps")
    protocols: dict[str, Protocol] = Field(description="method part (or `default`) -> steps per image and lr")
    class_images: ClassImages
    fidelity_sha256: str | None = Field(None, description="pin of the tiny fidelity networks' weights")
    strip_images: int = Field(4, ge=0, description="tracked images kept per evaluation (figure)")


class FewShot(Family):
    name = "few-shot"
    summary = "personalisation on N images of a subject: fidelity over steps, the corruption stage"
    Params = Params
    report = "bench.families.few_shot.report:REPORT"
    tiny_assets = {"fidelity": "bench.families.few_shot.fidelity.build:build_fidelity"}
    backbones = frozenset({"sd"})
    provides = {"class_images": "DreamBooth's prior-preservation data: the pre-trained model's samples of the "
                                "class prompt, per_image x N, drawn once"}
    trackable = {"dino": "DINO CLS cosine, training x generated pairs", "clip_i": "CLIP image cosine, same pairs",
                 "clip_t": "CLIP image-prompt cosine (rare token removed)",
                 "lpips": "LPIPS between images of one prompt (diversity)", "clip_iqa": "CLIP-IQA quality"}
    default_tracked = MEASURES
    checks_inputs_together = True

    @classmethod
    def smoke_overrides(cls, task) -> dict:
        """A smoke run generates for one prompt, two images (LPIPS pairs them), and few class images."""
        p = cls.parse_params(task)
        return super().smoke_overrides(task) | {
            "params.prompts": p.prompts[:1], "params.images_per_prompt": 2,
            "params.class_images.per_image": min(p.class_images.per_image, 2),
            "params.class_images.steps": min(p.class_images.steps, cls.smoke_sampler_steps)} | (
            {"params.live_prompts": p.live_prompts[:1]} if p.live_prompts else {})

    @classmethod
    def check(cls, task) -> None:
        super().check(task)
        p = cls.parse_params(task)
        spec = task.spec
        bad = [m for m in spec.evaluation.metrics if m not in MEASURES]
        if bad:
            raise BenchError(f"task {task.name}: family {cls.name!r} measures {', '.join(MEASURES)}, not {bad}")
        if "default" not in p.protocols:
            raise BenchError(f"task {task.name}: params.protocols needs a `default` entry")
        for key, ds in spec.datasets.items():
            sub = p.subjects.get(key)
            if sub is None:
                raise BenchError(f"task {task.name}: dataset {key!r} has no entry in params.subjects")
            if ds.synthetic is not None:
                from bench.families.few_shot.subjects import LOOKS

                if ds.synthetic.generator != "subjects" or sub.look not in LOOKS:
                    raise BenchError(f"task {task.name}: synthetic subject {key!r} needs generator 'subjects' and a "
                                     f"look in {sorted(LOOKS)}")
                if p.num_images > ds.synthetic.num_train:
                    raise BenchError(f"task {task.name}: num_images {p.num_images} > the {ds.synthetic.num_train} "
                                     f"images of subject {key!r}")
            elif sub.folder is None:
                raise BenchError(f"task {task.name}: hub subject {key!r} needs params.subjects.{key}.folder")
            else:
                if sub.images is not None and p.num_images > sub.images:
                    raise BenchError(f"task {task.name}: num_images {p.num_images} > the {sub.images} images of "
                                     f"subject {key!r} ({ds.hub.path}:dataset/{sub.folder})")
                if p.subject_region:
                    raise BenchError(f"task {task.name}: params.subject_region needs subject masks, which hub "
                                     f"subject {key!r} has none of")
            if sub.live and not p.live_prompts:
                raise BenchError(f"task {task.name}: live subject {key!r} needs params.live_prompts")
        for text in [p.instance_prompt, *p.prompts, *(p.live_prompts or [])]:
            if "{token}" not in text or "{cls}" not in text:
                raise BenchError(f"task {task.name}: prompt {text!r} must contain {{token}} and {{cls}}")
        # Everything from outside in one line: backbone weights, fidelity networks, subject images.
        from bench.backbone import adapter_class
        from bench.families.few_shot.fidelity import check_fidelity

        refuse_missing_inputs(task, [
            lambda: adapter_class(spec.backbone.kind).preflight(spec.backbone),
            lambda: check_fidelity(spec.evaluation.extractor, p.fidelity_sha256),
            *[(lambda k=k: _hub_subject(spec.datasets[k], p.subjects[k], p.num_images))
              for k, ds in spec.datasets.items() if ds.hub is not None]])

    @property
    def subject(self) -> SubjectSpec:
        return self.params.subjects[self.dataset_key]

    def train_spec(self, method) -> TrainSpec:
        """The paper's per-method budget: steps per image x N and the learning rate of the part
        that decides what trains (bnn+lora trains on LoRA's protocol)."""
        parts = method.full_name.split("+")
        name = next((n for n in parts if n in self.params.protocols), "default")
        proto = self.params.protocols[name]
        return self.spec.train.model_copy(update={"steps": proto.steps_per_image * self.params.num_images,
                                                  "lr": proto.lr})

    # -- data -----------------------------------------------------------------------------------
    def load_data(self) -> dict[str, str]:
        from bench.families.few_shot.fidelity import get_fidelity

        n, size = self.params.num_images, self.spec.image_size
        self.regions = None
        if self.dataset.synthetic is not None:
            from bench.families.few_shot.subjects import render_subject, subject_boxes

            images, masks = render_subject(self.subject.look, self.dataset.synthetic.num_train,
                                           self.dataset.synthetic.seed, size, masks=True)
            images, masks = images[:n], masks[:n]
            if self.params.subject_region:
                self.regions = torch.from_numpy(subject_boxes(masks))
            self.train_images = [torch.from_numpy(np.ascontiguousarray(x)) for x in images]
        else:
            images = _hub_subject(self.dataset, self.subject, n, size)
            self.train_images = ([torch.from_numpy(np.ascontiguousarray(x)) for x in
                                  _hub_subject(self.dataset, self.subject, n, size, crop=False)]
                                 if self.params.random_crop else [torch.from_numpy(x) for x in images])
        self.subject_images = torch.from_numpy(np.ascontiguousarray(images))
        self.fidelity = get_fidelity(self.spec.evaluation.extractor, self.params.fidelity_sha256)
        digest = canonical_hash({"images": _sha(images), "n": n})
        return {"train": digest, "reference": digest}  # fidelity is measured against the training images

    @property
    def prompts(self) -> list[str]:
        """The subject's evaluation prompts: the live-subject list for dogs and cats (`live`), the
        object list otherwise, as the official test_dreambooth.py."""
        return self.params.live_prompts if self.subject.live and self.params.live_prompts else self.params.prompts

    def prompt(self, template: str) -> str:
        return template.format(token=self.params.rare_token, cls=self.subject.class_word)

    def clip_text(self, template: str) -> str:
        """The prompt CLIP-T scores against: with the rare token where `clip_t_rare_token` (the
        official eval metadata keeps it), without it otherwise (the tiny CLIP has no such word)."""
        token = self.params.rare_token if self.params.clip_t_rare_token else ""
        return " ".join(template.format(token=token, cls=self.subject.class_word).split())

    def bind(self, backbone) -> None:
        super().bind(backbone)
        self.instance_ids = backbone.tokenize([self.prompt(self.params.instance_prompt)])[0]
        self.prompt_ids = backbone.tokenize([self.prompt(t) for t in self.prompts])
        self._class: dict[str, Any] = {}

    def draw_batch(self, train: TrainSpec):
        idx = torch.randint(0, len(self.subject_images), (train.batch_size,))
        size = self.spec.image_size
        rows = []
        for i in idx.tolist():
            img = self.train_images[i]
            h, w = img.shape[:2]
            if (h, w) != (size, size):  # random crop (an image already at size draws nothing)
                top = int(torch.randint(0, h - size + 1, ()))
                left = int(torch.randint(0, w - size + 1, ()))
                img = img[top:top + size, left:left + size]
            rows.append(img)
        return {"x0": self.backbone.encode(torch.stack(rows)),
                "input_ids": self.instance_ids.expand(train.batch_size, -1).clone()}

    # -- generation and fidelity ----------------------------------------------------------------
    def _generate(self, prompts: int, seed: int) -> torch.Tensor:
        from bench.sampling import sample

        m, s = self.params.images_per_prompt, self.spec.sampling
        ids = self.prompt_ids[:prompts].repeat_interleave(m, 0)  # prompt-major
        return sample(self.backbone, {"input_ids": ids}, diffusion=self.spec.diffusion, scheduler=s.scheduler,
                      steps=s.steps, guidance_scale=s.guidance_scale, batch_size=s.batch_size, seed=seed,
                      clip_denoised=s.clip_denoised)

    def measure(self, images: torch.Tensor, prompts: int) -> dict[str, float]:
        texts = [self.clip_text(t) for t in self.prompts[:prompts]]
        return self.fidelity.measure(images, texts, self.params.images_per_prompt, self.subject_images, self.regions)

    def tracking_spec(self, steps: int):
        """With `track_points`, every run is evaluated that many times whatever its N (a run with 6
        images trains 6x longer; a fixed K would give it 6x the evaluations and N=1 too few)."""
        spec = self.spec.tracking
        if spec is None or self.params.track_points is None:
            return spec
        return spec.model_copy(update={"every_steps": max(1, -(-steps // self.params.track_points))})

    def track_samples(self) -> int:
        return self.tracked_prompts * self.params.images_per_prompt

    @property
    def tracked_prompts(self) -> int:
        return min(self.params.track_prompts or len(self.prompts), len(self.prompts))

    def track(self, seed: int) -> dict[str, Any]:
        images = self._generate(self.tracked_prompts, TRACKING_SEED + seed)
        out: dict[str, Any] = self.measure(images, self.tracked_prompts)
        if self.params.strip_images:
            out["artifact:strip"] = encode_png_strip(images[: self.params.strip_images])
        return out

    def calibration_set(self) -> str:
        return ("the evaluation prompts after the tracked ones (prompts[track_prompts:2*track_prompts], "
                "images_per_prompt each), which no reported curve uses")

    def calibration_track(self, k: int) -> dict[str, float]:
        """The tracked measures on the prompts after the tracked ones, with the k-th calibration seed."""
        from bench.calibration import CALIBRATION_SAMPLING_SEED

        p, m = self.tracked_prompts, self.params.images_per_prompt
        if len(self.prompts) < 2 * p:
            raise BenchError(f"task {self.task.name}: calibration needs {p} prompts beyond the {p} tracked ones")
        ids, texts = self.prompt_ids[p:2 * p], [self.clip_text(t) for t in self.prompts[p:2 * p]]
        from bench.sampling import sample

        s = self.spec.sampling
        images = sample(self.backbone, {"input_ids": ids.repeat_interleave(m, 0)}, diffusion=self.spec.diffusion,
                        scheduler=s.scheduler, steps=s.steps, guidance_scale=s.guidance_scale,
                        batch_size=s.batch_size, seed=CALIBRATION_SAMPLING_SEED + k, clip_denoised=s.clip_denoised)
        return self.fidelity.measure(images, texts, m, self.subject_images, self.regions)

    def evaluate(self, method, seed: int) -> dict[str, Any]:
        from bench.features.cache import images_sha256

        p = len(self.prompts)
        images = self._generate(p, SAMPLING_SEED + seed)
        measured = self.measure(images, p)
        return {
            "metrics": {k: measured[k] for k in self.spec.evaluation.metrics},
            "samples": {"n": len(images), "sha256": images_sha256(images), "sampling_seed": SAMPLING_SEED + seed,
                        "prompts": [self.prompt(t) for t in self.prompts],
                        "images_per_prompt": self.params.images_per_prompt},
            "reference": {"split": "subject training images", "n": len(self.subject_images)},
            "extractors": self.fidelity.info(),
            "subject": {"name": self.dataset_key, "class_word": self.subject.class_word,
                        "num_images": self.params.num_images,
                        "instance_prompt": self.prompt(self.params.instance_prompt),
                        "class_prompt": self.params.class_prompt.format(cls=self.subject.class_word)},
        }

    # -- DreamBooth's prior-preservation data ---------------------------------------------------
    def extra(self, name: str):
        if name != "class_images":
            return super().extra(name)
        if "x0" not in self._class:
            with torch.random.fork_rng():  # built on first use, mid-step: never shift the step's own draws
                self._build_class_images()
        return {k: self._class[k] for k in ("x0", "input_ids")}

    def _build_class_images(self) -> None:
        from bench.atomic import cached_tensors
        from bench.backbone import load_backbone
        from bench.paths import cache_dir
        from bench.sampling import sample

        c = self.params.class_images
        n = c.per_image * self.params.num_images
        ids = self.backbone.tokenize([self.params.class_prompt.format(cls=self.subject.class_word)]).expand(n, -1)
        key = canonical_hash({"weights": self.backbone.weights_key, "class_images": c.model_dump(), "n": n,
                              "diffusion": self.spec.diffusion.key(), "ids": ids[0].tolist()})

        def make():
            pristine = load_backbone(self.spec.backbone).to(self.backbone.device)
            return {"images": sample(pristine, {"input_ids": ids.clone()}, diffusion=self.spec.diffusion,
                                     scheduler=c.scheduler, steps=c.steps, guidance_scale=c.guidance_scale,
                                     batch_size=c.batch_size, seed=c.seed, desc="class images")}

        images = cached_tensors(cache_dir() / "class-images" / f"{key}.safetensors", make)["images"]
        self._class.update(x0=self.backbone.encode(images, batch_size=self.spec.train.batch_size),
                           input_ids=ids.clone(), key=key, n=n, images=images)

    def provenance(self) -> dict[str, Any]:
        return {"class_images": {k: self._class[k] for k in ("key", "n")} if "key" in self._class else None,
                "fidelity": self.fidelity.info()}


def _sha(images: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


def _hub_subject(dataset, subject: SubjectSpec, n: int, size: int | None = None, crop: bool = True):
    """The first n images (sorted by file name) of the subject's folder in the hub dataset
    (google/dreambooth: dataset/<subject>/*.jpg), from the local cache, or from a local folder when
    `hub.path` is one (<path>/dataset/<subject>/); missing -> one line. Only those n are read.
    `crop`: centre-cropped to size x size (an array); False: a list, each resized to short side
    `size` (the official Resize before RandomCrop)."""
    from pathlib import Path

    hub = dataset.hub
    local = Path(os.path.expandvars(hub.path))
    if local.is_dir():
        root = local
        if not (root / "dataset" / subject.folder).is_dir():
            raise BenchError(f"subject folder {str(root / 'dataset' / subject.folder)!r} does not exist")
    else:
        from huggingface_hub import snapshot_download

        try:
            root = snapshot_download(hub.path, repo_type="dataset", revision=hub.revision,
                                     allow_patterns=[f"dataset/{subject.folder}/*"], local_files_only=True)
        except Exception:
            raise BenchError(f"subject images {hub.path}@{hub.revision}:dataset/{subject.folder} are not in the "
                             f"local cache (`huggingface-cli download {hub.path} --repo-type dataset --revision "
                             f"{hub.revision} --include 'dataset/{subject.folder}/*'`)") from None
    files = sorted(p for p in (Path(root) / "dataset" / subject.folder).iterdir()
                   if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if len(files) < n:
        raise BenchError(f"subject {subject.folder!r} has {len(files)} images, num_images asks for {n}")
    if size is None:
        return np.zeros(0)
    from PIL import Image

    from bench.data.hub_datasets import center_crop_resize

    if not crop:
        out = []
        for f in files[:n]:
            img = Image.open(f).convert("RGB")
            scale = size / min(img.size)
            out.append(np.asarray(img.resize(tuple(max(size, round(x * scale)) for x in img.size),
                                             resample=Image.BILINEAR)))
        return out
    return np.stack([center_crop_resize(Image.open(f).convert("RGB"), size) for f in files[:n]])
