"""Typed schema of a task file (tasks/*.yaml).

A task file is plain data, loaded with a safe YAML loader that refuses a key given twice
(bench.tasks.strict_yaml_load) and validated here; unknown keys are errors.

Layout of a task file::

    version: 1                 # bump on ANY change that can move numbers
    name: dit-transfer
    family: class-transfer     # methods declare which families they support
    description: ...
    reference: {title: ..., url: ...}
    base: {...}                # a full RunSpec body (see `ProfileSpec`)
    profiles:                  # each profile is a deep-merge overlay of `base`
      paper: {}
      tiny: {backbone: {...}, datasets: {food101: {hub: null, synthetic: {...}}}}

Overlay rule (the only one): mappings merge key by key, anything else replaces, and `null`
deletes the key. That is how a profile swaps a hub dataset for a synthetic stand-in.

What is specific to one kind of experiment lives in the family's own typed section `params`
(validated by the family's `Params` model, bench/families/). Shared sections: `tracking` (metrics
recorded every K steps with declared detection rules, bench/tracking.py) and `sweep` (a grid over
a method config field or a task parameter, expanded into runs keyed by the swept value).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, model_validator

from bench.tracking_rules import Rule


# Names that become folder names in result paths (task, profile, dataset): letters, digits, `-`,
# `_` and `.`, not starting with `.` (so never `..`) and without `/`: a task file cannot make a run
# write outside the results folder.
SLUG = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")


def _slug(value: str) -> str:
    if not SLUG.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid name: use letters, digits, '-', '_' and '.' (not first), "
                         f"at most 100 characters, no '/'")
    return value


Slug = Annotated[str, AfterValidator(_slug)]
Seed = Annotated[int, Field(ge=0, lt=2**63)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HubRef(Strict):
    """A model on the Hugging Face hub (or a local directory with the same layout)."""

    repo: str
    revision: str = "main"
    subfolder: str | None = None


class FromRun(Strict):
    """A finished run of the suite whose final model is the backbone (bench/backbone/from_run.py)."""

    result: str = Field(description="its result file, relative to the results folder")
    final_state_sha256: str = Field(description="the final state the result records; pins the content")


class BackboneSpec(Strict):
    kind: str = Field(description="backbone adapter, e.g. 'dit'")
    pretrained: HubRef | None = Field(None, description="hub weights (paper profile)")
    weights: str | None = Field(None, description="local safetensors path, relative to bench/assets")
    weights_sha256: str | None = None
    vae: HubRef | None = Field(None, description="latent autoencoder; null = pixel space")
    vae_scaling_factor: float = 0.18215
    config: dict[str, Any] = Field(default_factory=dict, description="architecture kwargs")
    num_source_classes: int | None = Field(None, description="classes of the pre-training label space")
    # None (unset) means False, so results recorded before this field keep their run identity.
    from_scratch: bool | None = Field(None, description="true: no pre-trained weights; the denoiser is initialised "
                                                        "at random from the run's seed (pre-training families)")

    from_run: FromRun | None = Field(None, description="take the weights from a finished run (`bench run "
                                                       "--backbone-from`); replaces pretrained / weights")
    # None (unset) keeps earlier results' identities: the diffusers default initialisation, and the
    # original DiT's one condition embedder shared by every block.
    init: Literal["dit"] | None = Field(None, description="from_scratch only: the initialisation of the paper's "
                                                          "code (dit: DiT's initialize_weights, adaLN-Zero); None: "
                                                          "diffusers' default")
    per_block_embedders: bool | None = Field(
        None, description="DiT: accept weights whose blocks carry their own timestep and label embedders (a release "
                          "trained in diffusers' layout) and keep them per block; None: the original DiT's one "
                          "shared embedder, refusing copies that differ")

    # The original DiT's numerics where diffusers' DiTTransformer2DModel differs (bench/backbone/dit.py).
    # None (unset) keeps diffusers' behaviour and the run identity of results recorded before them.
    timestep_embedding: Literal["diffusers", "dit"] | None = Field(
        None, description="'dit': the original DiT's sinusoidal timestep embedding (frequencies "
                          "exp(-ln(10000) i / half), [cos, sin]); None or 'diffusers': diffusers' (over half - 1)")
    mlp_norm_eps: float | None = Field(None, gt=0, description="eps of each block's pre-MLP LayerNorm (original DiT: "
                                                               "1e-6); None: diffusers' norm_eps (1e-5)")
    guidance_channels: int | None = Field(
        None, gt=0, description="classifier-free guidance on the first N channels of the noise prediction only, the "
                                "others kept from the conditional branch (original DiT's forward_with_cfg: 3); None: all")

    @model_validator(mode="after")
    def _one_weight_source(self):
        if self.from_run is not None:
            if self.from_scratch:
                raise ValueError("a backbone cannot be both from_scratch and from_run")
            if not self.config and self.pretrained is None:
                raise ValueError("a backbone from_run needs its architecture 'config' (or a known 'pretrained')")
            if self.init is not None:
                raise ValueError("backbone 'init' applies to from_scratch training; a from_run backbone is loaded")
            return self
        if self.from_scratch:
            if self.pretrained is not None or self.weights is not None:
                raise ValueError("a backbone trained from_scratch takes no 'pretrained' or 'weights'")
            if not self.config:
                raise ValueError("a backbone trained from_scratch needs its architecture 'config'")
            return self
        if self.init is not None:
            raise ValueError("backbone 'init' applies to from_scratch training; loaded weights are not re-initialised")
        if (self.pretrained is None) == (self.weights is None):
            raise ValueError("backbone needs exactly one of 'pretrained' (hub) or 'weights' (file), "
                             "or from_scratch: true")
        if self.weights is not None and not self.config:
            raise ValueError("a backbone loaded from a weights file needs its architecture 'config'")
        return self


class DiffusionSpec(Strict):
    num_train_timesteps: int = 1000
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    # None (unset) is diffusers' default ("leading": 996..0 for 250 of 1000 steps); left out of
    # `key()`, so caches and results keyed before this field keep their keys.
    timestep_spacing: Literal["leading", "dit"] | None = Field(
        None, description="sampling timesteps: 'dit' = the original DiT's respacing (space_timesteps(T, 'N'): "
                          "N steps evenly over 0..T-1, rounded, 999..0; DDPM only); None or 'leading': diffusers'")

    def key(self) -> dict[str, Any]:
        """The spec as caches are keyed by it: unset fields left out."""
        return self.model_dump(exclude_none=True)


class TrainSpec(Strict):
    """The training budget: identical for every method of a task."""

    batch_size: int = Field(gt=0)
    steps: int = Field(ge=0, description="0: no training, the run evaluates the backbone as loaded (set by "
                                         "pretrain-corruption's published-weights mode)")
    lr: float = Field(gt=0)
    weight_decay: float = Field(0.0, ge=0)
    optimizer: Literal["adamw"] = "adamw"
    class_dropout: float = Field(0.1, ge=0, le=1, description="label -> null class, for guidance")
    hflip: bool = True
    checkpoint_every: int = Field(gt=0)
    # None (unset) means "simple", so runs recorded before these fields keep their identity.
    loss: Literal["simple", "hybrid"] | None = Field(
        None, description="simple: epsilon MSE; hybrid: + vlb_weight * L_vlb term, trains learned sigma (bench/vlb.py)")
    vlb_weight: float | None = Field(None, gt=0, description="weight of the VLB term of the hybrid loss (default 1)")
    ema_decay: float | None = Field(
        None, gt=0, lt=1, description="sample and score an exponential moving average of the trained weights, "
                                      "updated after every step (DiT and Diff-Tuning: 0.9999); None: the weights")
    # None (unset) means no clipping, so runs recorded before this field keep their identity.
    max_grad_norm: float | None = Field(
        None, gt=0, description="clip the global L2 norm of the trained parameters' gradients before each step "
                                "(diffusers' DreamBooth scripts: 1.0); None: no clipping")


class SamplingSpec(Strict):
    scheduler: Literal["ddpm", "ddim", "dpm-solver"] = "ddim"
    steps: int = Field(gt=0)
    guidance_scale: float = Field(1.0, ge=1.0)
    num_samples: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    # None (unset) means no clipping, so results recorded before this field keep their identity.
    clip_denoised: bool | None = Field(
        None, description="clamp the predicted x0 to [-1, 1] before the posterior mean (improved-diffusion's "
                          "clip_denoised, its sampling default; pixel-space models); ddpm and ddim only")


class EvaluationSpec(Strict):
    extractor: str = Field(description="feature extractor registry name")
    metrics: list[str] = Field(min_length=1)
    reference: Literal["train", "eval"] = Field("eval", description="split the samples are compared to")
    metric_extractors: dict[str, str] | None = Field(
        None, description="metric -> extractor, overriding the metric's own (e.g. a tiny profile's cfid)")
    kid_subset_size: int = Field(1000, gt=1)
    kid_subsets: int = Field(100, gt=0)
    ewc_samples: int | None = Field(None, gt=0, description="pre-trained-model samples EWC's Fisher is estimated on "
                                                            "(default 256; docs/metrics.md)")


class KnowledgeBankSpec(Strict):
    """Images sampled once from the pre-trained backbone (Diff-Tuning's retention data)."""

    num_images: int = Field(gt=0)
    scheduler: Literal["ddpm", "ddim", "dpm-solver"] = "ddim"
    steps: int = Field(gt=0)
    guidance_scale: float = Field(1.0, ge=1.0)
    batch_size: int = Field(gt=0)
    seed: int = 0
    # None, not False, by default: unset fields drop out of run identities (bench/planning.py), so
    # declaring this field left every earlier result current.
    oracle: bool | None = Field(None, description="true: the bank is num_images real images of the source "
                                                  "model's own training split instead of its samples (an oracle "
                                                  "ablation: what a perfect source would replay; issue 30). Needs "
                                                  "weights whose build manifest names their source domain")


class HubDataset(Strict):
    path: str = Field(description="hub dataset id, a builder such as 'imagefolder' (with data_dir), or a "
                                  "local folder written by datasets' save_to_disk")
    name: str | None = None
    revision: str | None = Field(None, description="pinned commit; required for hub ids")
    data_dir: str | None = None
    train_split: str = "train"
    eval_split: str = "test"
    image_column: str = "image"
    label_column: str | None = Field("label", description="null for unlabelled data (unconditional families)")
    subset: int | None = Field(None, gt=0, description="a random subset of this many images of the split")
    subset_seed: int | None = Field(None, description="the subset's seed (default 0); the data hash pins the draw")


class SyntheticDataset(Strict):
    generator: str = Field(description="name in bench.data.GENERATORS")
    num_train: int = Field(gt=0)
    num_eval: int = Field(gt=0)
    seed: int = 0


class DatasetSpec(Strict):
    title: str
    num_classes: int | None = Field(None, gt=0, description="for labelled data (class-conditional families)")
    hub: HubDataset | None = None
    synthetic: SyntheticDataset | None = None
    stands_in_for: str | None = Field(None, description="for synthetic stand-ins: the real dataset")
    num_samples: int | None = Field(None, gt=0, description="samples to score for this dataset; default sampling.num_samples")

    @model_validator(mode="after")
    def _one_source(self):
        if (self.hub is None) == (self.synthetic is None):
            raise ValueError("a dataset needs exactly one of 'hub' or 'synthetic'")
        return self


class TrackingSpec(Strict):
    """Evaluate the family's tracked metrics every `every_steps` on a fixed evaluation set with
    fixed sampling seeds, keep the whole curve, and apply the declared detection rules."""

    every_steps: int = Field(gt=0)
    metrics: list[str] | None = Field(None, description="tracked metrics; None = the family's default")
    num_samples: int | None = Field(None, gt=0, description="evaluation-set size; None = the family's default")
    at_start: bool = Field(True, description="also evaluate the pre-trained model (step 0)")
    rules: list[Rule] = Field(default_factory=list, description="event detection (bench/tracking_rules.py)")


class SweepSpec(Strict):
    """A grid over one parameter: `method.<config field>` or a dotted task path (`params.eta`,
    `knowledge_bank.num_images`). Each value is one run, keyed by it in the path and the hash."""

    parameter: str
    values: list[float | int | str] = Field(min_length=1)


class ProfileSpec(Strict):
    """Everything a run needs, after the profile overlay is applied."""

    image_size: int = Field(gt=0)
    backbone: BackboneSpec
    diffusion: DiffusionSpec = DiffusionSpec()
    train: TrainSpec
    sampling: SamplingSpec
    evaluation: EvaluationSpec
    knowledge_bank: KnowledgeBankSpec | None = None
    datasets: dict[Slug, DatasetSpec] = Field(min_length=1)
    seeds: list[Seed] = Field(min_length=1)
    tracking: TrackingSpec | None = None
    sweep: SweepSpec | None = None
    params: dict[str, Any] | None = Field(None, description="the family's own section (its `Params` model)")
    smoke: bool | None = Field(None, description="`bench run --smoke`: the planner shrinks training and evaluation "
                                                 "(Family.smoke_overrides); a setup check, never a result to compare")

    @model_validator(mode="after")
    def _spacing_has_its_sampler(self):
        if self.diffusion.timestep_spacing == "dit":
            for what, sec in (("sampling", self.sampling), ("knowledge_bank", self.knowledge_bank)):
                if sec is not None and sec.scheduler != "ddpm":
                    raise ValueError(f"diffusion.timestep_spacing 'dit' (DiT's respacing) needs the ddpm scheduler; "
                                     f"{what}.scheduler is {sec.scheduler!r}")
        return self

    @model_validator(mode="after")
    def _kid_fits(self):
        if "kid" in self.evaluation.metrics and self.evaluation.kid_subset_size > self.sampling.num_samples:
            raise ValueError(f"evaluation.kid_subset_size ({self.evaluation.kid_subset_size}) exceeds "
                             f"sampling.num_samples ({self.sampling.num_samples})")
        return self


class Reference(Strict):
    title: str
    url: str


class Precondition(Strict):
    """A precondition of the mechanism a task tests (bench/preconditions.py): declared at the task
    file's top level, so it never enters a run's identity; checked before every verdict it gates."""

    id: Slug
    claim: str = Field(min_length=1, description="the regime in words, e.g. 'full fine-tuning overfits'")
    kind: Literal["curve_turns", "curve_plateau", "final_at_least", "final_at_most", "distinct_at_least",
                  "analysis_at_least", "analysis_at_most"]
    profiles: list[Slug] | None = Field(None, description="the profiles it applies to; None = every profile")
    verdicts: list[str] | None = Field(None, description="the methods whose verdicts it gates; None = all")
    method: str | None = Field(None, description="the runs it reads: this method's (None = every method's)")
    where: dict[str, Any] = Field(default_factory=dict, description="sweep values the runs must have (a list: any "
                                                                    "of them); runs swept on any other key are "
                                                                    "left out")
    metric: str | None = Field(None, description="a metric name, or (final_* kinds) a dotted path in the result file")
    relative_to: str | None = Field(None, description="final_* kinds: a dotted path in the result file; the value "
                                                      "checked is |metric / relative_to| per run")
    lower_is_better: bool = True
    last: int = Field(3, ge=2, description="curve_plateau: how many final evaluations must agree")
    value: float | None = Field(None, description="final_at_least/at_most: the level; distinct_at_least: the count")
    field: str | None = Field(None, description="distinct_at_least: a dotted path in the result file")
    analysis: str | None = Field(None, description="analysis_at_least/at_most: the `bench analyze` result it reads "
                                                   "(e.g. bank-quality); `metric` names one of its values")
    datasets: Literal["all", "any"] = "all"

    @model_validator(mode="after")
    def _complete(self):
        need = {"curve_turns": ("metric",), "curve_plateau": ("metric",), "final_at_least": ("metric", "value"),
                "final_at_most": ("metric", "value"), "distinct_at_least": ("field", "value"),
                "analysis_at_least": ("analysis", "metric", "value"),
                "analysis_at_most": ("analysis", "metric", "value")}[self.kind]
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"precondition {self.id!r} of kind {self.kind} needs {', '.join(missing)}")
        return self


class TaskFile(Strict):
    version: StrictInt = Field(gt=0, description="a positive integer (not `true`, not a string)")
    name: Slug = Field(description="letters, digits, '-', '_', '.' (not first); a folder name in result paths")
    family: str = Field(description="task family: a built-in name, an entry point, or module:Class")
    description: str
    reference: Reference | list[Reference]
    base: dict[str, Any]
    profiles: dict[Slug, dict[str, Any]] = Field(min_length=1)
    preconditions: list[Precondition] = Field(default_factory=list,
                                              description="the mechanism's regime, checked before verdicts")

    @model_validator(mode="after")
    def _preconditions_known(self):
        ids = [p.id for p in self.preconditions]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"precondition id(s) declared twice: {', '.join(dup)}")
        for p in self.preconditions:
            unknown = sorted(set(p.profiles or []) - set(self.profiles))
            if unknown:
                raise ValueError(f"precondition {p.id!r} names unknown profile(s) {', '.join(unknown)} "
                                 f"(the task has {', '.join(self.profiles)})")
        return self


def overlay(base: Any, over: Any) -> Any:
    """Deep-merge `over` onto `base`: mappings merge, other values replace, None deletes."""
    if not isinstance(base, dict) or not isinstance(over, dict):
        return copy.deepcopy(over)
    out = copy.deepcopy(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif key in out:
            out[key] = overlay(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def canonical_hash(obj: Any, length: int = 12) -> str:
    """Stable hash of JSON-able data (sorted keys), used for result keys and caches."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]
