"""Reading result files for reports: validate each one, and name every file that cannot be used.

A report never averages in a file it cannot trust. A file is unusable when it is half-written
(a leftover temporary file from an interrupted atomic write, or truncated JSON), fails the result
schema, sits at a path that disagrees with its content, or comes from a task version or profile
the task file does not have. Such files are returned as `Problem`s, each with its path and one
reason, and the commands refuse to write a report while any exist (unless told to list them as
excluded).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from bench.errors import BenchError
from bench.spec import canonical_hash

RESULT_SCHEMA = 1
ANALYSIS_DIR = "analysis"
BASELINE = "full-ft"  # the method every table compares with (aggregate.py, extras.py)
_TASK_DIR = re.compile(r"^(?P<task>[A-Za-z0-9_.-]+)@v(?P<version>\d+)$")
_SEED_FILE = re.compile(r"^seed(?P<seed>-?\d+)\.json$")


class _Open(BaseModel):
    # Result files may gain keys over time (e.g. "tracking"); the keys reports rely on are typed.
    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)


class KID(_Open):
    mean: float
    std: float


class EWC(_Open):
    total: float
    mean: float
    n_params: int


class Metrics(_Open):
    fid: float | None = None
    cfid: float | None = None
    kid: KID | None = None
    ewc: EWC | None = None


class Training(_Open):
    steps: int
    final_loss: float | None = None
    loss_curve: list[tuple[int, float]] = []
    trainable_params: int
    total_params: int


class Tracking(_Open):
    every_steps: int
    num_samples: int
    curves: dict[str, list[tuple[int, float]]]
    events: list[dict[str, Any]] = []


class RunResult(_Open):
    """The part of a run's result file (bench/runner.py execute) that reports read."""

    schema_: Literal[1] = RESULT_SCHEMA
    task: str
    task_version: int
    family: str
    profile: str
    dataset: str
    method: str
    method_config: dict[str, Any]
    config_hash: str
    seed: int
    budget: dict[str, Any]
    budget_override: bool
    metrics: Metrics
    training: Training
    provenance: dict[str, Any]
    resolved_spec: dict[str, Any]
    sweep: dict[str, Any] = {}           # the swept values of a sweep point (in its path)
    task_overrides: dict[str, Any] = {}  # dotted task paths -> values this run overrode
    tracking: Tracking | None = None     # curves of the tracked metrics (bench/tracking.py)

    @property
    def is_smoke(self) -> bool:
        """A `bench run --smoke` run: a setup check on a shrunken evaluation, in no report."""
        return bool(self.task_overrides.get("smoke"))

    @property
    def is_variant(self) -> bool:
        """A sweep point or a run with task overrides: drawn in analysis figures, kept out of the
        main tables (which compare methods under the task as written)."""
        return bool(self.sweep or self.task_overrides)

    @field_validator("resolved_spec")
    @classmethod
    def _has_spec(cls, v):
        if not isinstance(v.get("spec"), dict):
            raise ValueError("resolved_spec.spec is missing")
        return v


class ChainPoint(_Open):
    fraction: float
    steps_replaced: int
    fid: float


class ChainResult(_Open):
    """A chain-of-forgetting analysis file (bench/analysis/chain_of_forgetting.py)."""

    schema_: Literal[1] = RESULT_SCHEMA
    analysis: Literal["chain-of-forgetting"]
    task: str
    task_version: int
    profile: str
    dataset: str
    method: str
    config_hash: str
    run_config_hash: str
    seed: int
    sampling_steps: int
    points: list[ChainPoint]

    @field_validator("points")
    @classmethod
    def _non_empty(cls, v):
        if not v:
            raise ValueError("no points")
        return v


class EpsMsePoint(_Open):
    t: int
    mse_pretrained: float
    mse: float
    relative: float | None = None


class EpsMseResult(_Open):
    """A per-timestep epsilon-MSE analysis file (bench/analysis/eps_mse.py)."""

    schema_: Literal[1] = RESULT_SCHEMA
    analysis: Literal["eps-mse"]
    task: str
    task_version: int
    profile: str
    dataset: str
    method: str
    config_hash: str
    run_config_hash: str
    seed: int
    num_images: int
    points: list[EpsMsePoint]

    @field_validator("points")
    @classmethod
    def _non_empty(cls, v):
        if not v:
            raise ValueError("no points")
        return v


class BankQualityResult(_Open):
    """A knowledge-bank quality analysis file (bench/analysis/bank_quality.py)."""

    schema_: Literal[1] = RESULT_SCHEMA
    analysis: Literal["bank-quality"]
    task: str
    task_version: int
    profile: str
    dataset: str
    method: str
    config_hash: str
    seed: int
    values: dict[str, float]


ANALYSES: dict[str, type[BaseModel]] = {"chain-of-forgetting": ChainResult, "eps-mse": EpsMseResult,
                                        "bank-quality": BankQualityResult}


def _parse(model: type[BaseModel], data: dict):
    data = dict(data)
    if "schema" in data:
        data["schema_"] = data.pop("schema")
    return model(**data)


@dataclass(frozen=True)
class Problem:
    path: Path
    reason: str

    def line(self, root: Path) -> str:
        return f"{_rel(self.path, root)}: {self.reason}"


@dataclass(frozen=True)
class Loaded:
    path: Path
    data: Any  # RunResult or an analysis (ANALYSES)

    @property
    def section(self) -> tuple[str, int, str]:
        return (self.data.task, self.data.task_version, self.data.profile)


@dataclass
class ResultSet:
    root: Path
    runs: list[Loaded] = field(default_factory=list)       # the task as written: main tables
    variants: list[Loaded] = field(default_factory=list)   # sweep points and task overrides
    smoke: list[Loaded] = field(default_factory=list)      # `bench run --smoke` runs: in no table or figure
    analyses: list[Loaded] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    stale: list[Problem] = field(default_factory=list)     # complete, but no longer the task's spec

    def stale_lines(self) -> list[str]:
        return [p.line(self.root) for p in sorted(self.stale, key=lambda p: str(p.path))]

    def problem_lines(self) -> list[str]:
        return [p.line(self.root) for p in sorted(self.problems, key=lambda p: str(p.path))]


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _schema_reason(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]).replace("schema_", "schema") or "(top level)"
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"fails the result schema: {loc}: {first['msg']}{more}"


def _known_versions() -> dict[str, tuple[int, list[str]]]:
    """task name -> (current version, profiles), from the task files the suite knows."""
    from bench.tasks import available_tasks, read_task_file

    out = {}
    for name, path in available_tasks().items():
        try:
            tf = read_task_file(path)
        except BenchError:
            continue
        out[tf.name] = (tf.version, list(tf.profiles))
    return out


def _check_location(data, parts: tuple[str, ...], fields: list[tuple[str, str]]) -> str | None:
    from bench.planning import config_folder
    from bench.results import method_folder

    m = _TASK_DIR.match(parts[0])
    seed_m = _SEED_FILE.match(parts[-1])
    expected = {"task": m["task"], "task_version": int(m["version"]), "profile": parts[1],
                "seed": int(seed_m["seed"])}
    expected.update({name: parts[i] for name, i in fields})
    for key, want in expected.items():
        have = (config_folder(data.config_hash, data.task_overrides, data.sweep) if key == "config_dir"
                else method_folder(data.method) if key == "method" else getattr(data, key))
        if have != want:
            return f"its content says {key}={have!r} but its path says {want!r} (moved or edited by hand?)"
    return None


def load_results(root: Path, tasks: dict[str, tuple[int, list[str]]] | None = None,
                 check_stale: bool | None = None) -> ResultSet:
    """Every result and analysis file under `root`, validated; unusable files become Problems.

    `tasks` (name -> (current version, profiles)) defaults to the suite's task files; a result of
    any other version or profile is a Problem, so versions are never mixed. A complete result whose
    run identity no longer matches what its task file resolves to is stale: listed, never averaged.
    """
    root = Path(root)
    check_stale = tasks is None if check_stale is None else check_stale  # needs the real task files
    known = _known_versions() if tasks is None else tasks
    out = ResultSet(root=root)
    memo: dict = {}
    if not root.exists():
        return out
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).parts
        name = path.name
        if name.endswith(".tmp") or ".tmp." in name:
            out.problems.append(Problem(path, "half-written: a temporary file left by an interrupted write "
                                              "(delete it, or rerun that run with --force)"))
            continue
        if not name.endswith(".json") or any(p.startswith(".") for p in rel):
            continue
        is_analysis = len(rel) > 2 and rel[2] == ANALYSIS_DIR
        want = 8 if is_analysis else 6
        if len(rel) != want or not _TASK_DIR.match(rel[0]) or not _SEED_FILE.match(name):
            layout = ("<task>@v<version>/<profile>/analysis/<analysis>/<method>/<config-hash>/<dataset>/seed<k>.json"
                      if is_analysis else "<task>@v<version>/<profile>/<method>/<config-hash>/<dataset>/seed<k>.json")
            out.problems.append(Problem(path, f"not at a result path ({layout})"))
            continue
        try:
            raw = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            out.problems.append(Problem(path, f"not valid JSON, probably truncated or half-written ({err})"))
            continue
        if not isinstance(raw, dict):
            out.problems.append(Problem(path, "fails the result schema: top level is not an object"))
            continue
        if is_analysis and rel[3] not in ANALYSES:
            out.problems.append(Problem(path, f"analysis {rel[3]!r} is not known"))
            continue
        try:
            data = _parse(ANALYSES[rel[3]] if is_analysis else RunResult, raw)
        except ValidationError as err:
            out.problems.append(Problem(path, _schema_reason(err)))
            continue
        if is_analysis:
            bad = (f"analysis {rel[3]!r} is not known" if rel[3] != data.analysis else
                   _check_location(data, rel, [("method", 4), ("config_hash", 5), ("dataset", 6)]))
        else:
            bad = _check_location(data, rel, [("method", 2), ("config_dir", 3), ("dataset", 4)])
        if bad is None:
            bad = _version_problem(data, known)
        if bad is None and not is_analysis:
            bad = _metric_problem(data)
        if bad:
            out.problems.append(Problem(path, bad))
            continue
        if is_analysis:
            out.analyses.append(Loaded(path, data))
        elif (why := _stale_reason(raw, data, check_stale, memo)) is not None:
            out.stale.append(Problem(path, why))
        else:
            (out.smoke if data.is_smoke else out.variants if data.is_variant else out.runs).append(Loaded(path, data))
    return out


def _version_problem(data, known) -> str | None:
    if data.task not in known:
        return f"unknown task {data.task!r} (no task file defines it)"
    version, profiles = known[data.task]
    if data.task_version != version:
        return (f"from task version v{data.task_version}, but the task file {data.task} is at v{version}; "
                f"results of different task versions are never mixed (move old results aside or rerun)")
    if data.profile not in profiles:
        return f"profile {data.profile!r} is not in task {data.task} (profiles: {', '.join(profiles)})"
    return None


def _metric_problem(data: RunResult) -> str | None:
    for name in ("fid", "cfid"):
        value = getattr(data.metrics, name)
        if value is not None and not math.isfinite(value):
            return f"metrics.{name} is not finite"
    if not data.metrics.model_dump(exclude_none=True):
        return "fails the result schema: metrics is empty"
    return None


def _stale_reason(raw: dict, data: RunResult, check: bool, memo: dict) -> str | None:
    """Why a result no longer matches its task file (None: it matches): the run it records,
    planned again on the task as its file resolves now, has another identity, exactly as `bench run`
    would find before redoing it (bench/planning.py `identity_now`). Synthetic data is regenerated
    to compare its hash; hub data is trusted to its pinned revision."""
    if not check:
        return None
    from bench.planning import identity_now, recorded_data, stored_identity

    try:
        stored = stored_identity(raw)
        data_now = recorded_data(raw)
    except (KeyError, TypeError) as err:
        return f"stale: records no run identity ({err})"
    changed = _config_change_now(memo, raw)
    if changed is not None:
        return f"stale: {changed}; rerun it (`bench run` files runs of the file as it is now apart)"
    task = _task_now(memo, data.task, data.profile, data.task_overrides)
    if data.dataset not in task.spec.datasets:
        return f"stale: dataset {data.dataset!r} is no longer in task {data.task} ({data.profile})"
    if task.spec.datasets[data.dataset].synthetic is not None:
        data_now = _synthetic_data_now(memo, task, data.dataset)
    try:
        current = identity_now(raw, task, data_now)
    except (KeyError, TypeError) as err:
        return f"stale: what it records cannot be planned again ({type(err).__name__}: {err})"
    if current != stored:
        return (f"stale: its run spec no longer matches tasks/{data.task}.yaml (the task changed without a version "
                f"bump, or its data changed); rerun it (`bench run` redoes stale runs)")
    return None


def _config_change_now(memo: dict, raw: dict) -> str | None:
    """Whether the method config a result recorded comes from a config file (a peft tuner's) that has
    changed since (memoised for one load_results call)."""
    from bench.registry import recorded_config_change

    key = ("method", raw["method"], canonical_hash(raw.get("method_config") or {}))
    if key not in memo:
        memo[key] = recorded_config_change(raw["method"], raw.get("method_config") or {})
    return memo[key]


def _task_now(memo: dict, name: str, profile: str, overrides: dict):
    """The task as its file resolves now (memoised for one load_results call)."""
    from bench.tasks import load_task

    key = ("task", name, profile, canonical_hash(overrides))
    if key not in memo:
        memo[key] = load_task(name, profile).with_overrides(overrides)
    return memo[key]


def _synthetic_data_now(memo: dict, task, dataset: str) -> dict:
    from bench.families import family_class

    # The backbone a run starts from never changes its data: the downstream runs of every source
    # share one regeneration (values may be lists, hence the hash).
    data_overrides = {k: v for k, v in dict(task.overrides).items() if k != "backbone.from_run"}
    key = ("data", task.key, task.profile, canonical_hash(data_overrides), dataset)
    if key not in memo:
        memo[key] = family_class(task.file.family)(task, dataset).load_data()
    return memo[key]


def refuse_on_problems(rs: ResultSet, exclude_invalid: bool) -> None:
    """Bad input is named file by file; the report is not written unless the user chose to list
    those files as excluded."""
    if rs.problems and not exclude_invalid:
        lines = rs.problem_lines()
        shown = "; ".join(lines[:20]) + (f"; ... and {len(lines) - 20} more" if len(lines) > 20 else "")
        raise BenchError(f"{len(lines)} result file(s) under {rs.root} cannot be used: {shown}. Fix or remove "
                         f"them, or pass --exclude-invalid to list them as excluded on the report")


def section_key_str(section: tuple[str, int, str]) -> str:
    task, version, profile = section
    return f"{task}@v{version}/{profile}"
