"""Name -> method class, loaded lazily.

Built-in methods live in baselines/ (one file each) and are listed in `BUILTIN` as import paths,
so `bench ls` does not import every method. Methods outside the repo register through the
`bench.methods` entry-point group::

    [project.entry-points."bench.methods"]
    my-method = "my_pkg.my_method:MyMethod"

A name with `+` composes methods (see bench.method.ComposedMethod). A name `peft:<name>` is a peft
tuner written as a JSON config, `baselines/peft/<name>.json` (baselines/peft_tuner.py).
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from pydantic import ValidationError

from bench.errors import BenchError, did_you_mean, unknown
from bench.method import ComposedMethod, Method

PEFT_PREFIX = "peft:"  # `peft:<name>`: the tuner config baselines/peft/<name>.json

BUILTIN: dict[str, str] = {
    "full-ft": "baselines.full_ft:FullFineTuning",
    "diff-tuning": "baselines.diff_tuning:DiffTuning",
    "bitfit": "baselines.bitfit:BitFit",
    "lora": "baselines.lora:LoRA",
    "adaptformer": "baselines.adaptformer:AdaptFormer",
    "vpt-deep": "baselines.vpt_deep:VPTDeep",
    "difffit": "baselines.difffit:DiffFit",
    "attention-ft": "baselines.attention_ft:AttentionFineTuning",
    "a3ft": "baselines.a3ft:A3FT",
    "clean": "baselines.clean:Clean",
    "cep-u": "baselines.cep:CEPUniform",
    "cep-g": "baselines.cep:CEPGaussian",
    "ip": "baselines.ip:InputPerturbation",
    "dropout": "baselines.dropout:Dropout",
    "label-smoothing": "baselines.label_smoothing:LabelSmoothing",
    "controlnet": "baselines.controlnet:ControlNet",
    "bnn": "baselines.bnn:BNN",
    "dreambooth": "baselines.dreambooth:DreamBooth",
    "bnn-norm": "baselines.bnn:BNNNorm",
}


@lru_cache(maxsize=None)
def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group="bench.methods")}


def method_names() -> list[str]:
    from baselines.peft_tuner import method_names as tuner_names

    return sorted({*BUILTIN, *_entry_points(), *tuner_names()})


def composed_names() -> list[str]:
    """The compositions worth listing: `X+diff-tuning` for every parameter-efficient method X (one
    that sets the class attribute `parameter_efficient = True`: X chooses what trains, diff-tuning
    how; `full-ft+diff-tuning` is just `diff-tuning`), and `X+Y` for every Y a method X names in its
    class attribute `listed_with` (BNN's `bnn+dreambooth`, `bnn+lora`). Any other `a+b` that the
    composition rule allows runs too; it is just not listed."""
    out = [f"{name}+diff-tuning" for name in method_names()
           if getattr(method_class(name), "parameter_efficient", False)]
    return out + [f"{name}+{other}" for name in method_names() for other in getattr(method_class(name), "listed_with", ())]


def method_class(name: str) -> type[Method]:
    if name in BUILTIN:
        module, attr = BUILTIN[name].split(":")
        cls = getattr(importlib.import_module(module), attr)
    elif name in _entry_points():
        cls = _entry_points()[name].load()
    elif name.startswith(PEFT_PREFIX):
        from baselines.peft_tuner import tuner_class

        cls = tuner_class(name[len(PEFT_PREFIX):])
    else:
        raise unknown("method", name, method_names())
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise BenchError(f"method {name!r} does not point at a bench.method.Method subclass")
    if cls.name != name:
        raise BenchError(f"method {name!r} is registered under a different name ({cls.name!r})")
    return cls


def _parse_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def build_method(name: str, overrides: dict[str, str] | None = None, family: str | None = None) -> Method:
    """Instantiate `name` (possibly `a+b`) with `key=value` overrides; keys of a composed method
    are prefixed by the part's name (`lora.rank=16`). With `family`, a method class's
    `family_defaults[family]` replaces its config defaults (the overrides still win)."""
    overrides = dict(overrides or {})
    parts = name.split("+")
    if any(not p for p in parts):
        raise BenchError(f"malformed method name {name!r}; compose methods as 'base+modifier'")
    for part in parts:
        if part not in method_names():
            if len(parts) == 1:
                raise unknown("method", part, method_names())
            raise BenchError(f"unknown method {part!r} in composition {name!r}{did_you_mean(part, method_names())}")
    methods = []
    for part in parts:
        cls = method_class(part)
        prefix = f"{part}." if len(parts) > 1 else ""
        mine = {k[len(prefix):]: _parse_value(v) for k, v in overrides.items() if k.startswith(prefix)}
        for k in mine:
            overrides.pop(prefix + k)
        # A family's own defaults for this method (e.g. the few-shot scripts' LoRA rank 4 on q/k/v/out),
        # under whatever --set says.
        defaults = getattr(cls, "family_defaults", {}).get(family, {}) if family is not None else {}
        try:
            methods.append(cls(cls.Config(**{**defaults, **mine})))
        except ValidationError as err:
            first = err.errors()[0]
            key = ".".join(str(p) for p in first["loc"])
            fields = ", ".join(cls.Config.model_fields)
            raise BenchError(f"method {part!r}: config key {prefix}{key}: {first['msg']} (keys: {fields})") from None
    if overrides:
        raise BenchError(f"method config keys {sorted(overrides)} match no part of {name!r}")
    try:
        method = methods[0] if len(methods) == 1 else ComposedMethod(methods)
    except ValueError as err:
        raise BenchError(str(err)) from None
    if family is not None and not method.supports(family):
        raise BenchError(f"method {name!r} does not support task family {family!r} "
                         f"(it supports: {', '.join(sorted(method.families))})")
    return method


def recorded_config_change(method: str, config: dict[str, Any]) -> str | None:
    """Why a result's recorded method config is no longer the method's own (None: it is): a tuner
    config file (`peft:<name>`) edited or removed since. Other methods' configs live in code, whose
    changes the result's git commit records."""
    from baselines.peft_tuner import config_change

    parts = method.split("+")
    per_part = config if len(parts) > 1 else {method: config}
    for part in parts:
        if part.startswith(PEFT_PREFIX):
            why = config_change(part[len(PEFT_PREFIX):], (per_part.get(part) or {}).get("config_sha256"))
            if why is not None:
                return why
    return None
