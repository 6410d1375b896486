"""`bench build-tiny`: rebuild the tiny profile's committed weights."""

from __future__ import annotations


NAME = "build-tiny"
HELP = "rebuild the tiny profile's committed weights"


def add_arguments(p) -> None:
    p.add_argument("what", choices=["source", "extractor", "conditions", "fidelity"])
    p.add_argument("--task", default="dit-transfer")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)


def run(args, log) -> int:
    from bench.tiny_build import build_conditions, build_extractor, build_fidelity, build_source

    fn = {"source": build_source, "extractor": build_extractor, "conditions": build_conditions,
          "fidelity": build_fidelity}[args.what]
    kwargs = {k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size), ("lr", args.lr)) if v}
    fn(log=log, **kwargs) if args.what in ("conditions", "fidelity") else fn(args.task, log=log, **kwargs)
    return 0
