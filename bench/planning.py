"""A run's identity, resolved once.

Planning a run (bench/runner.py `plan`) fixes everything that names it: the task with the run's
overrides applied, the method and its config, the dataset, seed and budget, the swept values, the
config hash and the result file. `PlannedRun` holds all of it, computed once, here; the runner,
the executors, `bench check`, `bench verify` and the analyses read the record and never put a hash
or a path together from pieces again. Once the family has loaded the data, `with_data` adds the
data hashes and the run identity.

Result files are read back through the same code: `stored_identity` hashes the fields a result
recorded (the fields `PlannedRun.record` writes) with the same `run_identity`, and `replan` plans
the run a result records again, on a task as its file resolves now (the stale check) or as the
result recorded it (`bench verify`). So what `bench run` skips and what a report counts as current
cannot drift apart.

Every input of the two hashes is exactly what the committed results were keyed with: the same
dicts, None fields dropped from the identity, overrides overlaid in sorted order, the budget
without unset fields, `task_overrides` left out of the config hash when there are none. Changing
any of them makes every committed result stale.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import BenchError
from bench.paths import checkpoint_dir
from bench.results import config_dir, result_path
from bench.spec import canonical_hash
from bench.tasks import Task, apply_overrides

if TYPE_CHECKING:
    from bench.method import Method


# -- the two hashes -------------------------------------------------------------------------------

def budget(task: Task, steps: int | None) -> dict:
    """The training budget a run is keyed by: the task's `train` section, with `--steps` applied.
    Unset optional fields are left out, so adding one (e.g. `loss`) keeps earlier results' keys."""
    train_spec = task.spec.train.model_dump(exclude_none=True)
    if steps is not None:
        train_spec["steps"] = steps
    return train_spec


def run_config_hash(method_name: str, method_config: dict, budget: dict, task_overrides: dict | None = None) -> str:
    """The config hash in a run's result path: method, config, budget and task overrides."""
    key = {"method": method_name, "config": method_config, "budget": budget}
    if task_overrides:  # absent when empty, so results from before overrides existed keep their key
        key["task_overrides"] = task_overrides
    return canonical_hash(key)


def _strip_none(obj):
    if isinstance(obj, dict):
        return {k: _strip_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_strip_none(v) for v in obj]
    return obj


def run_identity(resolved_spec: dict, task_overrides: dict, dataset: str, method: str, method_config: dict,
                 budget: dict, data: dict[str, str]) -> str:
    """Hash of everything that can move a run's numbers: the resolved profile spec with the run's
    overrides applied (this dataset's entry only; other datasets, the seed list and the sweep
    declaration do not change this run), the method and its config, the budget, and the sha256 of
    the training and reference data. Unset (None) fields are dropped, so adding an optional schema
    field does not make every earlier result stale.

    Its arguments are named as the result file records them: a planned run passes its own
    (`PlannedRun.identity_fields`, which its result file records), a stored result what it
    recorded (`stored_identity`)."""
    spec = apply_overrides(resolved_spec["spec"], task_overrides)
    body = {k: v for k, v in spec.items() if k not in ("datasets", "seeds", "sweep")}
    body["dataset"] = spec["datasets"][dataset]
    return canonical_hash(_strip_none({
        "task": resolved_spec["task"], "version": resolved_spec["version"], "family": resolved_spec["family"],
        "profile": resolved_spec["profile"], "spec": body, "method": method, "method_config": method_config,
        "budget": budget, "data": data,
    }), length=16)


def config_folder(config_hash: str, task_overrides: dict, sweep: dict) -> str:
    """A run's config folder: its config hash, prefixed by its task overrides and swept values, so
    a variant is readable in the tree. Runs are filed by it, and stored results are checked
    against it (bench/report/load.py). A smoke run's many shrunken settings would crowd out the
    label, so it reads `smoke=True` (and its swept values) only; the hash still tells runs apart."""
    if task_overrides.get("smoke"):
        return config_dir(config_hash, {"smoke": True, **sweep})
    return config_dir(config_hash, {**task_overrides, **sweep})


# -- the record -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlannedRun:
    """One run, resolved once when it is planned; everything after reads it.

    The dicts are never modified once planned: they go into the result file and the hashes as
    they are (a frozen dataclass cannot freeze them, and a read-only mapping would not hash the same)."""

    task: Task                         # with this run's task overrides applied (--task-set, sweep, Family.resolve)
    method_name: str                   # as asked for (`lora+diff-tuning`, `module:Class`): what builds the method
    method_overrides: dict[str, str]   # its config overrides (--set and swept method fields)
    method: str                        # the method's full name, as keyed and recorded
    method_config: dict[str, Any]      # its resolved config, as keyed and recorded
    dataset: str
    seed: int
    steps: int | None                  # --steps; None: the task's own budget
    sweep: dict[str, Any]              # this run's swept values (with the task overrides, its path label)
    resolved_spec: dict[str, Any]      # the task's resolved profile (Task.resolved()), as recorded
    budget: dict[str, Any]
    config_hash: str
    path: Path                         # its result file, under the results folder of planning time
    data: dict[str, str] | None = None  # sha256 of its training and reference data (`with_data`)
    identity: str | None = None         # its run identity (`with_data`)

    @property
    def task_overrides(self) -> dict[str, Any]:
        return dict(self.task.overrides)

    @property
    def budget_override(self) -> bool:
        return self.steps is not None

    @property
    def config_dir(self) -> str:
        """The config folder of its result path (`config_folder`)."""
        return self.path.parents[1].name

    @property
    def checkpoint_dir(self) -> Path:
        """Where it keeps its checkpoints (in this machine's cache; the last holds the final state)."""
        return checkpoint_dir(self.path)

    def with_data(self, data: dict[str, str]) -> "PlannedRun":
        """This run once its family has loaded the data: with the data hashes and its identity."""
        data = dict(data)
        fields = self.identity_fields()
        return replace(self, data=data, identity=run_identity(**fields, data=data))

    def identity_fields(self) -> dict[str, Any]:
        """The fields its identity is hashed from, named as the result file records them."""
        return {"resolved_spec": self.resolved_spec, "task_overrides": self.task_overrides, "dataset": self.dataset,
                "method": self.method, "method_config": self.method_config, "budget": self.budget}

    def record(self) -> dict[str, Any]:
        """What its result file records of its identity (the rest of the file is what it measured);
        `stored_identity` reads these fields back."""
        self._require_identity()
        task = self.task
        return {
            **self.identity_fields(),
            "task": task.name,
            "task_version": task.file.version,
            "family": task.file.family,
            "profile": task.profile,
            "seed": self.seed,
            "config_hash": self.config_hash,
            "sweep": self.sweep,
            "run_identity": self.identity,
            "budget_override": self.budget_override,
        }

    def is_current(self) -> bool:
        """Its result file exists and records this run's identity: complete, and nothing that can
        move its numbers changed since (needs `with_data`)."""
        return self.not_current() is None

    def not_current(self) -> str | None:
        """Why its result file is not current (None: it is): missing, truncated or unreadable
        (an interrupted copy, a full disk), or stale (complete, but what it records no longer
        plans to this run)."""
        self._require_identity()
        try:
            stored = stored_identity(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return "missing"
        except (OSError, ValueError, KeyError, TypeError):
            return "truncated or unreadable"  # or from an older schema: redo it
        return None if stored == self.identity else "stale"

    def _require_identity(self) -> None:
        if self.identity is None:
            raise BenchError(f"{self.path}: a run's identity is known only once its data is loaded (with_data)")

    def build_method(self) -> "Method":
        """A fresh instance of its method (training injects modules into it, so every run, and
        every worker, builds its own)."""
        from bench.registry import build_method

        return build_method(self.method_name, self.method_overrides, family=self.task.family)

    def check_method(self, method: "Method") -> None:
        """`method` is the one this run was planned with: the result records the planned config,
        so training another would file its numbers under the wrong key."""
        if method.full_name != self.method or method.config_dict() != self.method_config:
            raise BenchError(f"method {method.full_name} {method.config_dict()} is not the one planned for "
                             f"{self.path}: {self.method} {self.method_config}")


def _planned(task: Task, method_name: str, method_overrides: dict[str, str], method: str, method_config: dict,
             dataset: str, seed: int, steps: int | None, sweep: dict[str, Any]) -> PlannedRun:
    """The one place a run's budget, config hash and result path are worked out."""
    overrides = dict(task.overrides)
    b = budget(task, steps)
    cfg = run_config_hash(method, method_config, b, overrides)
    path = result_path(task.key, task.profile, method, config_folder(cfg, overrides, sweep), dataset, seed)
    return PlannedRun(task=task, method_name=method_name, method_overrides=dict(method_overrides), method=method,
                      method_config=method_config, dataset=dataset, seed=seed, steps=steps, sweep=dict(sweep),
                      resolved_spec=task.resolved(), budget=b, config_hash=cfg, path=path)


def plan_run(task: Task, method: "Method", dataset: str, seed: int, *, steps: int | None = None,
             sweep: dict[str, Any] | None = None, method_name: str | None = None,
             method_overrides: dict[str, str] | None = None) -> PlannedRun:
    """A run of `method` on `task` (overrides already applied). `method_name` and
    `method_overrides` are what `method` was built from (default: its full name, no overrides);
    a worker builds the method again from them."""
    return _planned(task, method_name or method.full_name, method_overrides or {}, method.full_name,
                    method.config_dict(), dataset, seed, steps, sweep or {})


# -- stored results -------------------------------------------------------------------------------

def recorded_data(result: dict) -> dict[str, str]:
    """The data hashes a result file recorded (they went into its identity)."""
    return {"train": result["provenance"]["train_data_sha256"], "reference": result["reference"]["sha256"]}


def stored_identity(result: dict) -> str:
    """The run identity of a result file, from the fields it recorded (`PlannedRun.record`);
    raises KeyError or TypeError on a file that lacks one."""
    return run_identity(result["resolved_spec"], result.get("task_overrides") or {}, result["dataset"],
                        result["method"], result["method_config"], result["budget"], recorded_data(result))


def recorded_steps(result: dict) -> int | None:
    """The `--steps` a result was run with (None: the task's budget)."""
    return result["budget"]["steps"] if result.get("budget_override") else None


def recorded_overrides(method: str, config: dict[str, Any]) -> dict[str, str]:
    """The recorded method config as `bench run --set` overrides (prefixed per part when composed)."""
    parts = method.split("+")
    per_part = config if len(parts) > 1 else {method: config}
    return {(f"{part}.{k}" if len(parts) > 1 else k): json.dumps(v)
            for part, cfg in per_part.items() for k, v in cfg.items()}


def replan(result: dict, task: Task, method: "Method | None" = None) -> PlannedRun:
    """The run a result file records (method and config, dataset, seed, --steps, swept values)
    planned again on `task`, which carries the recorded task overrides: what `bench run` would plan
    for it there.

    On the task as its file resolves now, `replan(...).with_data(data now).identity` is the
    identity the result must still record to be current (the stale check of reports). On the
    task as the result recorded it, with the method built again from the recorded config
    (`method`, which then is what is hashed), it is the run `bench verify` repeats."""
    overrides = recorded_overrides(result["method"], result["method_config"])
    name, config = (result["method"], result["method_config"]) if method is None else \
        (method.full_name, method.config_dict())
    return _planned(task, result["method"], overrides, name, config, result["dataset"], result["seed"],
                    recorded_steps(result), result.get("sweep") or {})


def identity_now(result: dict, task: Task, data: dict[str, str]) -> str:
    """The identity the run a result file records has today: planned again on `task` (its task
    file as it resolves now, with the recorded task overrides) with `data` (the data hashes now).
    The result is current while this equals `stored_identity(result)`, which is the comparison
    `bench run` makes before it skips the run."""
    return replan(result, task).with_data(data).identity
