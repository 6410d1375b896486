"""Benchmark suite for transfer learning of diffusion models."""

from __future__ import annotations

import importlib.abc
import sys

__version__ = "0.1.0"

# Modules that moved when each family became one folder (bench/families/<name>/). A plug-in that
# imports an old path gets one line naming the new one instead of a bare ModuleNotFoundError.
MOVED = {
    "bench.conditions": "bench.families.controlnet.conditions",
    "bench.fidelity": "bench.families.few_shot.fidelity",
    "bench.data.subjects": "bench.families.few_shot.subjects",
    "bench.report.controlnet": "bench.families.controlnet.report",
    "bench.report.corruption": "bench.families.pretrain_corruption.report",
    "bench.report.few_shot": "bench.families.few_shot.report",
}


class _MovedModules(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        for old, new in MOVED.items():
            if fullname == old or fullname.startswith(old + "."):
                raise ModuleNotFoundError(f"{fullname} moved to {new + fullname[len(old):]}: import it from there",
                                          name=new)  # not `fullname`: `from pkg import old` would swallow it
        return None


sys.meta_path.append(_MovedModules())  # last: a module that really exists is always found first
