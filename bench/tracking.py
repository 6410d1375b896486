"""Metrics tracked over training: the trainer callback and its stored curve.

Every `tracking.every_steps` optimizer steps (and at step 0 when `at_start`, and always at the
last step) the trainer asks the family to evaluate its tracked metrics on a fixed evaluation set
with fixed sampling seeds. The curve travels in every checkpoint, so a resumed run ends with the
same curve, bit for bit, as an uninterrupted one. At the end the task's declared rules
(bench/tracking_rules.py) are applied; a rule that never fires is recorded as not reached.
"""

from __future__ import annotations

import base64
import io
import time
from typing import TYPE_CHECKING, Callable

import numpy as np

from bench.spec import TrackingSpec
from bench.tracking_rules import _Threshold, detect, threshold_sensitivity


def measurement_only(key: str) -> bool:
    """Whether a task override changes only what is tracked (`--track K`), not the trained model."""
    return key == "tracking" or key.startswith("tracking.")

if TYPE_CHECKING:
    import torch

ARTIFACT = "artifact:"


class Tracker:
    def __init__(self, spec: TrackingSpec, metrics: list[str], evaluate: Callable[[], dict],
                 num_samples: int, rules: list | None = None):
        self.spec = spec
        self.metrics = metrics
        self.evaluate = evaluate
        self.num_samples = num_samples
        self.rules = list(spec.rules) if rules is None else rules
        self.curves: dict[str, list[list[float]]] = {m: [] for m in metrics}
        self.artifacts: dict[str, list[list]] = {}  # name -> [[step, value], ...] (e.g. image strips)
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
        for name, value in values.items():
            if name.startswith(ARTIFACT):
                self.artifacts.setdefault(name[len(ARTIFACT):], []).append([step, value])

    def state(self) -> dict:
        return {"curves": self.curves, **({"artifacts": self.artifacts} if self.artifacts else {})}

    def load_state(self, state: dict) -> None:
        self.curves = {m: [list(p) for p in state["curves"].get(m, [])] for m in self.metrics}
        self.artifacts = {k: [list(p) for p in v] for k, v in state.get("artifacts", {}).items()}

    def result(self) -> dict:
        """What a result file stores under `tracking`."""
        return {
            "every_steps": self.spec.every_steps,
            "num_samples": self.num_samples,
            "curves": self.curves,
            "events": [self._event(rule) for rule in self.rules],
            **({"artifacts": self.artifacts} if self.artifacts else {}),
            "seconds": round(self.seconds, 3),
        }

    def _event(self, rule) -> dict:
        """A rule's detection; a threshold rule also records the step at threshold -20%, +-0, +20%,
        so a reader sees whether the conclusion depends on the picked threshold."""
        curve = [tuple(p) for p in self.curves[rule.metric]]
        event = detect(rule, curve)
        if isinstance(rule, _Threshold):
            event["sensitivity"] = threshold_sensitivity(rule, curve)
        return event


# -- artifacts kept beside a curve (`artifact:strip`): a row of generated images as one PNG ------------

def encode_png_strip(images: torch.Tensor) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.concatenate(list(images.numpy()), 1)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def decode_png_strip(text: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB"))
