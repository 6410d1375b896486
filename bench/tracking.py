"""Metrics tracked over training: the trainer callback and its stored curve.

Every `tracking.every_steps` optimizer steps (and at step 0 when `at_start`, and always at the
last step) the trainer asks the family to evaluate its tracked metrics on a fixed evaluation set
with fixed sampling seeds. The curve travels in every checkpoint, so a resumed run ends with the
same curve, bit for bit, as an uninterrupted one. At the end the task's declared rules
(bench/tracking_rules.py) are applied; a rule that never fires is recorded as not reached.
"""

from __future__ import annotations

import time
from typing import Callable

from bench.spec import TrackingSpec
from bench.tracking_rules import detect


class Tracker:
    def __init__(self, spec: TrackingSpec, metrics: list[str], evaluate: Callable[[], dict[str, float]],
                 num_samples: int):
        self.spec = spec
        self.metrics = metrics
        self.evaluate = evaluate
        self.num_samples = num_samples
        self.curves: dict[str, list[list[float]]] = {m: [] for m in metrics}
        self.seconds = 0.0

    def due(self, step: int, last: int) -> bool:
        if step == 0:
            return self.spec.at_start
        return step % self.spec.every_steps == 0 or step == last

    def __call__(self, step: int) -> None:
        t0 = time.perf_counter()
        values = self.evaluate()
        self.seconds += time.perf_counter() - t0
        for name in self.metrics:
            self.curves[name].append([step, float(values[name])])

    def state(self) -> dict:
        return {"curves": self.curves}

    def load_state(self, state: dict) -> None:
        self.curves = {m: [list(p) for p in state["curves"].get(m, [])] for m in self.metrics}

    def result(self) -> dict:
        """What a result file stores under `tracking`."""
        return {
            "every_steps": self.spec.every_steps,
            "num_samples": self.num_samples,
            "curves": self.curves,
            "events": [detect(rule, [tuple(p) for p in self.curves[rule.metric]]) for rule in self.spec.rules],
            "seconds": round(self.seconds, 3),
        }
