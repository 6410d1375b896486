"""Any peft tuner from a JSON config: the method `peft:<name>` is the file `baselines/peft/<name>.json`.

A config is what peft itself would take: `peft_type` (a peft.PeftType name: LORA, LOHA, LOKR, OFT,
BOFT, VERA, IA3, ...) and keyword arguments of that type's config class, looked up in peft's own
`PEFT_TYPE_TO_CONFIG_MAPPING` (DoRA is peft's `"peft_type": "LORA", "use_dora": true`). Beside them,
bench's keys:

    target_groups  the backbone module groups to adapt (required), e.g. ["attention"]
    targets        only the layers of each group module with these names relative to it,
                   e.g. ["to_q", "to_k", "to_v"] (optional; default: every Linear/Conv layer in them)
    lr             the learning rate (optional; default: the task's)
    summary        one line for `bench ls` (optional)

peft's `target_modules` is never written: it is resolved from the backbone's module groups when the
model is prepared, so one file adapts the DiT, the UNet and Stable Diffusion wherever they have the
groups. Every other key of the file is a field of the method's config, so `--set r=16` and
`--sweep r=4,8` work; the file's sha256 (`config_sha256`) is a field too, so editing the file gives
its runs a new config hash and run identity, and reports list results of the old file as stale.

Loading the file checks it (valid JSON, a known peft_type that injects into layers, no unknown or
bench-owned key, values that peft accepts); `check_backbone` tries the tuner on the run's backbone
built without weights at plan time, so a tuner that cannot adapt a group's layer types is refused
there in one line. Both happen before any training.

Injection is peft's `inject_adapter_in_model` (the model stays the diffusers model, as with
baselines/lora.py). Tuners that keep state shared by all layers (VeRA's random projections) are
refused by that function; for them the tuner class is built exactly as that function builds it:
the shared tensors are buffers of every adapted layer, regenerated from the config's own seed
(`projection_prng_key`) by a fresh `prepare()`, so checkpoints hold only the trained parameters.

More config folders: BENCH_PEFT_PATH (os.pathsep separated), after baselines/peft/.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field, create_model, model_validator

from baselines._common import ParameterEfficientMethod, freeze, mark_prepared, unfreeze
from bench.errors import BenchError, did_you_mean
from bench.method import MethodConfig, TrainContext

PREFIX = "peft:"
BENCH_KEYS = ("peft_type", "target_groups", "targets", "lr", "summary")
# peft config fields a file must not set, and why.
OWNED = {
    "target_modules": "bench resolves it from the backbone's module groups: set target_groups (and targets)",
    "exclude_modules": "bench resolves the adapted layers from target_groups and targets",
    "modules_to_save": "it trains whole copies of modules; train them through a method of their own",
    "inference_mode": "it would freeze the adapter",
    "task_type": "peft metadata, not used here",
    "auto_mapping": "peft metadata, not used here",
    "peft_version": "peft metadata, not used here",
    "base_model_name_or_path": "peft metadata, not used here",
    "revision": "peft metadata, not used here",
}
ADAPTABLE = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)  # layers a group offers
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


# -- the config files -----------------------------------------------------------------------------

def config_dirs() -> list[Path]:
    """baselines/peft/ (beside this file, so an installed copy finds its package data), then the
    folders of BENCH_PEFT_PATH."""
    extra = [Path(p) for p in os.environ.get("BENCH_PEFT_PATH", "").split(os.pathsep) if p]
    for folder in extra:
        if not folder.is_dir():
            raise BenchError(f"BENCH_PEFT_PATH entry {str(folder)!r} is not a folder; fix or unset BENCH_PEFT_PATH")
    return [Path(__file__).resolve().parent / "peft", *extra]


def tuner_files() -> dict[str, Path]:
    """name -> config file, over every config folder (the first folder that has a name wins)."""
    out: dict[str, Path] = {}
    for folder in config_dirs():
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            if _NAME.match(path.stem):
                out.setdefault(path.stem, path)
    return out


def method_names() -> list[str]:
    return [f"{PREFIX}{name}" for name in tuner_files()]


def _shown(path: Path) -> str:
    from bench.paths import project_root

    try:
        return str(path.resolve().relative_to(project_root().resolve()))
    except ValueError:
        return str(path)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _peft_type_names() -> list[str]:
    """peft types that inject into layers (not prompt learning), as peft names them."""
    from peft import PEFT_TYPE_TO_CONFIG_MAPPING, PromptLearningConfig
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING

    # What inject_adapter_in_model refuses outright: prompt learning, adaption prompt, shadow.
    def injects(config_class) -> bool:
        return not issubclass(config_class, PromptLearningConfig) and \
            config_class.__name__ not in ("AdaptionPromptConfig", "ShadowConfig")

    return sorted(str(getattr(t, "value", t)) for t in PEFT_TYPE_TO_TUNER_MAPPING
                  if t in PEFT_TYPE_TO_CONFIG_MAPPING and injects(PEFT_TYPE_TO_CONFIG_MAPPING[t]))


def _peft_config_class(peft_type: str):
    from peft import PEFT_TYPE_TO_CONFIG_MAPPING

    return PEFT_TYPE_TO_CONFIG_MAPPING[peft_type]


def read_config(path: Path) -> dict[str, Any]:
    """The file's content, checked; every problem is one BenchError line naming the file."""
    where = _shown(path)
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise BenchError(f"{where}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise BenchError(f"{where}: cannot be read ({err})") from None
    if not isinstance(content, dict):
        raise BenchError(f"{where}: must be a JSON object with peft_type and target_groups")
    peft_type = content.get("peft_type")
    known = _peft_type_names()
    if not isinstance(peft_type, str) or peft_type not in known:
        import peft

        hint = did_you_mean(str(peft_type).upper(), known) if isinstance(peft_type, str) else ""
        raise BenchError(f"{where}: unknown peft_type {peft_type!r}{hint} (peft {peft.__version__} "
                         f"tuners: {', '.join(known)})")
    groups = content.get("target_groups")
    if not (isinstance(groups, list) and groups and all(isinstance(g, str) and g for g in groups)):
        raise BenchError(f"{where}: target_groups must be a non-empty list of backbone module group names, "
                         f"e.g. [\"attention\"]")
    targets = content.get("targets")
    if targets is not None and not (isinstance(targets, list) and targets and all(isinstance(t, str) and t for t in targets)):
        raise BenchError(f"{where}: targets must be a non-empty list of layer names inside the groups, "
                         f"e.g. [\"to_q\", \"to_v\"]")
    fields = [f.name for f in dataclasses.fields(_peft_config_class(peft_type)) if f.init]
    for key in content:
        if key in OWNED:
            raise BenchError(f"{where}: key {key!r} is not set in a tuner config ({OWNED[key]})")
        if key not in BENCH_KEYS and key not in fields:
            allowed = [*BENCH_KEYS, *(f for f in fields if f not in OWNED)]
            raise BenchError(f"{where}: unknown key {key!r} for peft_type {peft_type}{did_you_mean(key, allowed)}")
    try:
        peft_config({k: v for k, v in content.items() if k != "summary"}, ["placeholder"])
    except Exception as err:  # noqa: BLE001 - peft's own checks raise ValueError, TypeError, ...
        raise BenchError(f"{where}: peft rejects the config: {_first_line(err)}") from None
    return content


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def peft_config(values: dict[str, Any], target_modules: list[str]):
    """peft's config object for a tuner config's values (bench's keys dropped) and resolved layers."""
    kwargs = {k: v for k, v in values.items() if k not in BENCH_KEYS and k != "config_sha256"}
    return _peft_config_class(values["peft_type"])(**kwargs, target_modules=target_modules)


def config_change(name: str, recorded_sha256: str | None) -> str | None:
    """Why a result of `peft:<name>` recorded with `recorded_sha256` is not of the file as it is now
    (None: it is)."""
    path = tuner_files().get(name)
    if path is None:
        return f"its tuner config {name}.json no longer exists"
    now = file_sha256(path)
    if now != recorded_sha256:
        return f"its tuner config {_shown(path)} changed since (sha256 now {now[:12]}, recorded {str(recorded_sha256)[:12]})"
    return None


# -- target layers --------------------------------------------------------------------------------

def resolve_targets(backbone, groups: tuple[str, ...], names: list[str] | None) -> list[tuple[str, torch.nn.Module]]:
    """(qualified name, layer) of every Linear/Conv layer inside the groups' modules (only those named
    `names` relative to a group module, where given), each layer once."""
    out: dict[int, tuple[str, torch.nn.Module]] = {}
    for group in groups:
        for qualified, module in backbone.module_group(group):
            for sub, layer in module.named_modules():
                if isinstance(layer, ADAPTABLE) and (names is None or sub in names):
                    out.setdefault(id(layer), (f"{qualified}.{sub}" if sub else qualified, layer))
    return list(out.values())


# -- the method -----------------------------------------------------------------------------------

class PeftTunerConfig(MethodConfig):
    """Base of every tuner's config; each file adds its keys as fields (`tuner_class`)."""

    tuner: ClassVar[str] = ""  # the file's name (`peft:<tuner>`)
    config_sha256: str = Field(description="sha256 of the tuner's config file (part of the run identity)")

    @model_validator(mode="after")
    def _current_and_accepted(self):
        values = self.model_dump()
        name = self.__class__.tuner
        change = config_change(name, self.config_sha256)
        if change is not None:
            raise ValueError(f"{change}; a run of {PREFIX}{name} uses the file as it is")
        try:
            peft_config(values, ["placeholder"])
        except Exception as err:  # noqa: BLE001
            raise ValueError(f"peft rejects the config: {_first_line(err)}") from None
        return self


class PeftTuner(ParameterEfficientMethod):
    """One class per config file, made by `tuner_class`."""

    Config = PeftTunerConfig
    # The groups say where it runs; these are the families whose backbones offer attention/blocks.
    families = frozenset({"class-transfer", "limited-data", "few-shot"})
    peft_type: ClassVar[str] = ""
    config_file: ClassVar[Path] = Path()

    def __init__(self, config: MethodConfig | None = None):
        super().__init__(config)
        self.groups = tuple(self.config.target_groups)

    @property
    def tuner_label(self) -> str:
        return f"{self.name} ({self.config.peft_type})"

    def _targets(self, backbone) -> list[tuple[str, torch.nn.Module]]:
        targets = resolve_targets(backbone, self.groups, self.config.targets)
        if not targets:
            which = f"named {list(self.config.targets)} " if self.config.targets else ""
            raise BenchError(f"{self.tuner_label}: no Linear or Conv layer {which}in group(s) "
                             f"{list(self.groups)} of backbone kind {backbone.kind!r}")
        return targets

    def prepare(self, model, ctx):
        from peft import inject_adapter_in_model
        from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING

        targets = self._targets(ctx.backbone)
        mark_prepared(model, self.name)
        freeze(model)
        config = peft_config(self.config.model_dump(), [name for name, _ in targets])
        tuner = PEFT_TYPE_TO_TUNER_MAPPING[config.peft_type]
        try:
            if tuner.uses_shared_state:  # what inject_adapter_in_model would do, were it allowed (docstring)
                model = tuner(model, config, adapter_name="default").model
            else:
                model = inject_adapter_in_model(config, model, adapter_name="default")
        except Exception as err:  # noqa: BLE001 - peft refuses layer types with ValueError, TypeError, ...
            types = sorted({type(layer).__name__ for _, layer in targets})
            # peft names the first layer it refuses ("Target module Conv2d(...) is not supported").
            named = re.search(r"Target module (\w+)\(", str(err))
            refused = [named.group(1)] if named and named.group(1) in types else types
            raise BenchError(f"{self.tuner_label} cannot adapt {', '.join(refused)} layers: group(s) "
                             f"{list(self.groups)} on backbone kind {ctx.backbone.kind!r} hold {', '.join(types)} "
                             f"layers (peft: {_first_line(err)})") from None
        freeze(model)  # ours are exactly the tuner's own parameters
        unfreeze(p for n, p in model.named_parameters() if f".{tuner.prefix}" in n)
        return model

    def check_backbone(self, spec) -> None:
        """Prepare a copy of the run's backbone built without weights: a tuner that cannot adapt its
        layers is refused at plan time, in prepare()'s one line."""
        from bench.backbone import adapter_class

        adapter = adapter_class(spec.kind)
        model = adapter.build_without_weights(spec)
        ctx = TrainContext(backbone=adapter.wrap_without_weights(model, spec), dataset=None,  # type: ignore[arg-type]
                           num_timesteps=0, batch_size=0)
        type(self)(self.config).prepare(model, ctx)


@lru_cache(maxsize=None)
def _tuner_class(name: str, path: Path, sha256: str) -> type[PeftTuner]:
    content = read_config(path)
    fields: dict[str, Any] = {k: (Any, v) for k, v in content.items() if k not in ("summary", "lr")}
    fields["targets"] = (Any, content.get("targets"))
    if "lr" in content:
        fields["lr"] = (float | None, Field(content["lr"], gt=0))
    fields["config_sha256"] = (str, sha256)
    config = create_model(f"PeftTuner_{name.replace('-', '_')}Config", __base__=PeftTunerConfig, **fields)
    config.tuner = name
    summary = content.get("summary") or f"peft {content['peft_type']} on {', '.join(content['target_groups'])}"
    return type(f"PeftTuner_{name.replace('-', '_')}", (PeftTuner,), {
        "name": f"{PREFIX}{name}", "Config": config, "peft_type": content["peft_type"], "config_file": path,
        "summary": summary, "reference": f"peft {content['peft_type']} from {_shown(path)}",
    })


def tuner_class(name: str) -> type[PeftTuner]:
    """The method class of `peft:<name>` (one per file content: an edited file is read again)."""
    files = tuner_files()
    if name not in files:
        from bench.errors import unknown

        raise unknown("method", f"{PREFIX}{name}", method_names())
    path = files[name]
    return _tuner_class(name, path, file_sha256(path))
