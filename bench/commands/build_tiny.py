"""`bench build-tiny`: rebuild the tiny profile's committed weights.

`source` and `extractor` are shared by every family (bench/tiny_build.py); any other asset is a
family's own, declared in its `tiny_assets` (name -> "module:function"), so this command knows no
family by name.
"""

from __future__ import annotations

import importlib

NAME = "build-tiny"
HELP = "rebuild the tiny profile's committed weights"
SHARED = {"source": "bench.tiny_build:build_source", "extractor": "bench.tiny_build:build_extractor"}


def assets() -> dict[str, str]:
    """Every buildable asset: the shared ones, then each family's own."""
    from bench.families import family_class, family_names

    found = dict(SHARED)
    for name in family_names():
        for asset, target in family_class(name).tiny_assets.items():
            found.setdefault(asset, target)
    return found


def add_arguments(p) -> None:
    p.add_argument("what", help="source, extractor, or a family's own asset (conditions, fidelity, ...)")
    p.add_argument("--task", default="dit-transfer", help="source and extractor: the task whose tiny profile they serve")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)


def run(args, log) -> int:
    from bench.errors import unknown

    table = assets()
    if args.what not in table:
        raise unknown("tiny asset", args.what, table)
    module, attr = table[args.what].split(":")
    fn = getattr(importlib.import_module(module), attr)
    kwargs = {k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size), ("lr", args.lr)) if v}
    fn(log=log, **kwargs) if args.what not in SHARED else fn(args.task, log=log, **kwargs)
    return 0
