"""Evaluation noise measured, and event rules calibrated against it (issue 29).

`bench calibrate --task T --profile P` re-evaluates fixed checkpoints -- the pre-trained model
(with the method's modules at initialisation) and one model fine-tuned with a calibration seed --
K >= 8 times with independent sampling seeds on the family's calibration evaluation set
(`Family.calibration_track`: pairs or prompts that no reported curve uses), for every tracked
metric. The sd across those K values is the noise of one evaluation. The result is committed as
calibration/<task>@v<version>/<profile>.json, beside (never inside) results/.

From that sd, `null_quantile` sets each event rule's margin or threshold offset by simulation: the
smallest value at which at most 5% of noise-only curves (iid Gaussian at the measured sd, of the
run's length) fire the rule with the given hold. The calibrated values are stored with the rules
in the same file, per dataset and curve length; reports re-apply them to the stored whole curves
(results keep `tracking.curves`), so no run is retrained and no task file (run identity) changes.

The null is iid noise around a flat curve. The reported curves reuse one evaluation set and one
seed at every checkpoint, so their noise is correlated along the curve; iid noise is the
conservative choice for a running-maximum drawdown (correlated noise dips less).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.paths import project_root

SCHEMA = 1
CALIBRATION_RUN_SEED = 1000            # the fine-tuned model's training seed: never a reported seed
CALIBRATION_SAMPLING_SEED = 900_000    # + k: sampling seeds, disjoint from SAMPLING_SEED / TRACKING_SEED + seed
MIN_K = 8
FPR = 0.05                             # the false-positive rate a calibrated rule may have on noise alone
SIMULATIONS = 20_000
SIM_SEED = 29                          # the simulation's seed: calibrated values are deterministic
LENGTHS = range(3, 41)                 # curve lengths a calibrated rule is stored for
HOLD = 2                               # onset and recovery must hold this many evaluations


def calibration_dir() -> Path:
    return project_root() / "calibration"


def calibration_path(task: str, version: int, profile: str) -> Path:
    return calibration_dir() / f"{task}@v{version}" / f"{profile}.json"


def load_calibration(task: str, version: int, profile: str) -> dict | None:
    """The committed calibration of a task version and profile, or None when there is none."""
    p = calibration_path(task, version, profile)
    if not p.exists():
        return None
    data = json.loads(p.read_text())
    if data.get("schema") != SCHEMA:
        raise BenchError(f"{p}: calibration schema {data.get('schema')!r}, expected {SCHEMA}")
    return data


# -- null simulation ----------------------------------------------------------------------------

def _noise(length: int, n: int = SIMULATIONS, seed: int = SIM_SEED) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, length))


def dip_critical(z: np.ndarray, hold: int = HOLD) -> np.ndarray:
    """Per curve (rows of z, higher is better), the largest margin at which the dip rule's onset
    fires: max over i >= 1 of min over the hold window [i, i+hold) of (max(z[:i]) - z[j])."""
    n, length = z.shape
    out = np.full(n, -np.inf)
    runmax = np.maximum.accumulate(z, axis=1)
    for i in range(1, length - hold + 1):
        window = z[:, i:i + hold]
        out = np.maximum(out, (runmax[:, i - 1:i] - window).min(axis=1))
    return out


def below_critical(z: np.ndarray, hold: int) -> np.ndarray:
    """Per curve (rows of z, lower is better), the largest offset below the curve's own first
    value at which `first_below` (threshold = first value - offset) with `hold` fires: max over
    i >= 1 of min over the window [i, i+hold) of (z[0] - z[j]). The first value is as noisy as the
    rest, and is the pre-trained model's own level on the run's evaluation set."""
    n, length = z.shape
    out = np.full(n, -np.inf)
    for i in range(1, length - hold + 1):
        out = np.maximum(out, (z[:, :1] - z[:, i:i + hold]).min(axis=1))
    return out


def null_quantile(kind: str, length: int, hold: int, fpr: float = FPR, n: int = SIMULATIONS,
                  seed: int = SIM_SEED) -> float:
    """The margin (dip) or offset below the curve's first value (first_below), in noise sds, at which a
    noise-only curve of `length` evaluations fires the rule with probability at most `fpr`."""
    z = _noise(length, n, seed)
    crit = dip_critical(z, hold) if kind == "dip" else below_critical(z, hold) if kind == "first_below" else None
    if crit is None:
        raise BenchError(f"no null calibration for rule kind {kind!r}")
    return float(np.quantile(crit, 1 - fpr, method="higher"))


def rule_table(kind: str, hold: int) -> dict[str, float]:
    """Curve length -> the null quantile in noise sds, for every length in LENGTHS."""
    return {str(L): null_quantile(kind, L, hold) for L in LENGTHS if L > hold}


# -- measurement ----------------------------------------------------------------------------------

def summarise(values: list[dict[str, float]], metrics: list[str]) -> dict[str, dict]:
    out = {}
    for m in metrics:
        x = np.array([float(v[m]) for v in values], dtype=np.float64)
        out[m] = {"mean": float(x.mean()), "sd": float(x.std(ddof=1)), "k": int(x.size),
                  "values": [float(v) for v in x]}
    return out


def noise_sd(cal: dict, dataset: str, metric: str) -> float | None:
    """The noise sd of one evaluation of `metric` on `dataset`: the larger of the pre-trained and
    the fine-tuned checkpoint's where both were measured (the fine-tuned one is measured on one
    dataset; elsewhere the pre-trained sd is scaled by the ratio found there when it exceeds 1)."""
    noise = (cal.get("noise") or {}).get(dataset) or {}
    pre = (noise.get("pretrained") or {}).get(metric, {}).get("sd")
    fin = (noise.get("finetuned") or {}).get(metric, {}).get("sd")
    if pre is None:
        return fin
    if fin is not None:
        return max(pre, fin)
    ratio = (cal.get("finetuned_ratio") or {}).get(metric)
    return pre * max(1.0, ratio) if ratio else pre


def calibrated_value(cal: dict, kind: str, length: int, hold: int = HOLD) -> float:
    """The stored null quantile (in sds) of a rule kind at a curve length."""
    table = ((cal.get("rules") or {}).get(kind) or {})
    if table.get("hold") != hold:
        raise BenchError(f"calibration has no {kind} rule at hold {hold}")
    q = table["quantile_sd"].get(str(length))
    if q is None:
        raise BenchError(f"calibration has no {kind} rule for curves of {length} evaluations")
    return float(q)


def rules_block() -> dict[str, Any]:
    """What a calibration file stores about the rules: per kind, the hold and the null quantile
    per curve length, in noise sds (multiply by a dataset's noise_sd for the margin/offset)."""
    return {kind: {"hold": HOLD, "fpr": FPR, "simulations": SIMULATIONS, "sim_seed": SIM_SEED,
                   "null": "iid Gaussian noise around a flat curve",
                   "quantile_sd": rule_table(kind, HOLD)} for kind in ("dip", "first_below")}


def finite(x) -> bool:
    return x is not None and math.isfinite(x)


# -- the measurement (`bench calibrate`) ----------------------------------------------------------

class _CalibrationTracker:
    """Stands in for the trainer's Tracker: at step 0 (the pre-trained model, the method's modules
    at initialisation) and at the last step (the fine-tuned model) it re-evaluates the checkpoint K
    times on the family's calibration set with independent sampling seeds."""

    def __init__(self, family, metrics: list[str], k: int, finetune: bool, at_start: bool, log):
        self.family, self.metrics, self.k, self.finetune, self.log = family, metrics, k, finetune, log
        self.at_start = at_start
        self.values: dict[str, list[dict[str, float]]] = {}

    def due(self, step: int, last: int) -> bool:
        # A task that does not track step 0 (pre-training from scratch: the model at step 0 is
        # random noise, not a curve's point) measures only the trained checkpoint.
        return (step == 0 and self.at_start) or (self.finetune and step == last)

    def __call__(self, step: int) -> None:
        which = "pretrained" if step == 0 else "finetuned"
        self.log(f"calib  {self.family.dataset_key}: {which} checkpoint (step {step}), {self.k} evaluations")
        self.values[which] = [{m: float(v[m]) for m in self.metrics} for v in
                              (self.family.calibration_track(i) for i in range(self.k))]

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass


def measure(task, method_name: str, datasets: list[str] | None, k: int, finetune_dataset: str | None,
            finetune_steps: int | None, log=print, finetune: bool = True) -> dict[str, Any]:
    """Measure the evaluation noise of every tracked metric of `task` (module docstring). Without
    `finetune`, only the pre-trained checkpoint of each dataset (`bench calibrate --add`)."""
    import tempfile

    import torch

    from bench.backbone import load_backbone, noise_schedule
    from bench.families import family_class
    from bench.method import TrainContext
    from bench.runner import plan
    from bench.trainer import train

    if k < MIN_K:
        raise BenchError(f"--k must be at least {MIN_K} (independent evaluations per checkpoint), got {k}")
    if task.spec.tracking is None:
        raise BenchError(f"task {task.name} ({task.profile}) tracks nothing: there is no noise to calibrate")
    points, names, _ = plan(task, method_name, {}, datasets, [CALIBRATION_RUN_SEED], None)
    point = points[0]
    finetune_dataset = (finetune_dataset or names[0]) if finetune else None
    if finetune and finetune_dataset not in names:
        raise BenchError(f"--finetune-dataset {finetune_dataset!r} is not among the calibrated datasets {names}")
    noise: dict[str, dict] = {}
    evaluation_set, metrics, steps_used = "", [], None
    torch.use_deterministic_algorithms(True, warn_only=True)
    for run in point.runs:
        family = family_class(run.task.file.family)(run.task, run.dataset)
        family.load_data()
        backbone = load_backbone(run.task.spec.backbone)
        family.bind(backbone)
        family.start(run.seed)
        method = run.build_method()
        train_spec = family.train_spec(method)
        ctx = TrainContext(backbone=backbone, dataset=family.dataset,
                           num_timesteps=run.task.spec.diffusion.num_train_timesteps,
                           batch_size=train_spec.batch_size, extra_data=family.extra)
        metrics = family.tracked_metrics()
        fin = run.dataset == finetune_dataset
        steps = (finetune_steps or train_spec.steps) if fin else 0
        tracker = _CalibrationTracker(family, metrics, k, fin, run.task.spec.tracking.at_start, log)
        with tempfile.TemporaryDirectory() as ckpt:
            train(method, ctx, lambda: family.draw_batch(train_spec), train_spec, noise_schedule(run.task.spec.diffusion),
                  seed=run.seed, steps=steps, ckpt_dir=Path(ckpt), tracker=tracker)
        noise[run.dataset] = {which: summarise(vals, metrics) for which, vals in tracker.values.items()}
        evaluation_set = family.calibration_set()
        if fin:
            steps_used = steps
    ratio = {}
    fin_noise = noise.get(finetune_dataset, {}) if finetune else {}
    for m in metrics:
        pre = fin_noise.get("pretrained", {}).get(m, {}).get("sd")
        post = fin_noise.get("finetuned", {}).get(m, {}).get("sd")
        if pre is not None and post is not None and pre > 0:
            ratio[m] = post / pre
    return {
        "schema": SCHEMA, "task": task.name, "version": task.file.version, "profile": task.profile,
        "method": point.runs[0].method, "sweep": point.runs[0].sweep, "k": k,
        "run_seed": CALIBRATION_RUN_SEED,
        "sampling_seeds": [CALIBRATION_SAMPLING_SEED + i for i in range(k)],
        "evaluation_set": evaluation_set,
        "finetuned": {"dataset": finetune_dataset, "steps": steps_used},
        "finetuned_ratio": ratio,
        "metrics": metrics,
        "noise": noise,
        "rules": rules_block(),
    }


def add(existing: dict, cal: dict, command: str) -> dict:
    """`existing` with the pre-trained noise of `cal`'s datasets added (`bench calibrate --add`):
    same method, K and sampling seeds, or refused; the fine-tuned checkpoint stays the committed one."""
    for key in ("method", "k", "sampling_seeds", "run_seed", "metrics"):
        if existing.get(key) != cal.get(key):
            raise BenchError(f"--add: the committed calibration has {key} {existing.get(key)!r}, this one "
                             f"{cal.get(key)!r}; measure the task again without --add")
    return {**existing, "noise": {**existing["noise"], **cal["noise"]},
            "added": [*existing.get("added", []), {"datasets": sorted(cal["noise"]), "command": command}]}


def write(cal: dict, command: str) -> Path:
    from bench.results import write_json_atomic

    path = calibration_path(cal["task"], cal["version"], cal["profile"])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {**cal, "command": command})
    return path


# -- re-applying calibrated rules to stored curves (reports) -------------------------------------

def dip_rule(cal: dict, dataset: str, metric: str, length: int) -> dict | None:
    """The calibrated dip rule for a curve of `length` on `dataset`: {"margin", "hold", "sd",
    "quantile_sd"}, or None without a measured sd."""
    sd = noise_sd(cal, dataset, metric)
    if sd is None:
        return None
    q = calibrated_value(cal, "dip", length)
    return {"margin": q * sd, "hold": HOLD, "sd": sd, "quantile_sd": q}


def below_rule(cal: dict, dataset: str, metric: str, length: int) -> dict | None:
    """The calibrated first_below offset (below the run's first value) for a curve of `length`."""
    sd = noise_sd(cal, dataset, metric)
    if sd is None:
        return None
    q = calibrated_value(cal, "first_below", length)
    return {"offset": q * sd, "hold": HOLD, "sd": sd, "quantile_sd": q}
