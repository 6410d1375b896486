"""Task families: name -> Family class (bench/families/base.py says what a family owns).

Built-in families are listed here as import paths. Families outside the repo register through the
`bench.families` entry-point group, or a task file names one directly as `module:Class` (the
module must be importable, e.g. on PYTHONPATH)::

    [project.entry-points."bench.families"]
    my-family = "my_pkg.my_family:MyFamily"
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from importlib.metadata import entry_points

from bench.errors import BenchError, unknown
from bench.families.base import Family

BUILTIN: dict[str, str] = {
    "class-transfer": "bench.families.class_transfer:ClassTransfer",
    "controlnet": "bench.families.controlnet:ControlNetFamily",
    "few-shot": "bench.families.few_shot:FewShot",
    "limited-data": "bench.families.limited_data:LimitedData",
    "pretrain-corruption": "bench.families.pretrain_corruption:PretrainCorruption",
}


@lru_cache(maxsize=None)
def _entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group="bench.families")}


def family_names() -> list[str]:
    return sorted({*BUILTIN, *_entry_points()})


def family_class(name: str) -> type[Family]:
    if name in BUILTIN:
        module, attr = BUILTIN[name].split(":")
        cls = getattr(importlib.import_module(module), attr)
    elif name in _entry_points():
        cls = _entry_points()[name].load()
    elif ":" in name:
        module, attr = name.split(":", 1)
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise BenchError(f"task family {name!r} cannot be imported: {exc}") from None
    else:
        raise unknown("task family", name, family_names())
    if not (isinstance(cls, type) and issubclass(cls, Family)):
        raise BenchError(f"task family {name!r} does not point at a bench.families.base.Family subclass")
    return cls
