"""Finding, loading and resolving task files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bench.errors import BenchError, unknown
from bench.paths import task_dirs
from bench.spec import ProfileSpec, TaskFile, overlay


@dataclass(frozen=True)
class Task:
    """A task file with one profile resolved: what a run actually uses. `overrides` (dotted task
    paths -> values, from a sweep or `--task-set`) are applied on top of the profile; `resolved()`
    still reports the profile itself, and result files record the overrides beside it."""

    file: TaskFile
    profile: str
    spec: ProfileSpec
    path: Path
    overrides: tuple[tuple[str, Any], ...] = ()

    def with_overrides(self, overrides: dict[str, Any]) -> "Task":
        """This task with dotted-path overrides (`knowledge_bank.num_images=250`) applied and
        re-validated; an unknown path or a bad value is one clear error."""
        if not overrides:
            return self
        merged = {**dict(self.overrides), **overrides}
        try:
            spec = ProfileSpec.model_validate(apply_overrides(self.profile_spec().model_dump(mode="json"), merged))
        except ValidationError as err:
            raise BenchError(_format_validation(self.path, err).replace(
                f"{self.path}: ", f"{self.path}: override {', '.join(f'{k}={v}' for k, v in merged.items())}: ", 1)) from None
        return Task(self.file, self.profile, spec, self.path, tuple(sorted(merged.items())))

    def profile_spec(self) -> ProfileSpec:
        return _resolve_profile(self.file, self.profile, self.path) if self.overrides else self.spec

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def family(self) -> str:
        """The family's name (a task file may name it as `module:Class`)."""
        from bench.families import family_class

        return family_class(self.file.family).name

    @property
    def key(self) -> str:
        return f"{self.file.name}@v{self.file.version}"

    def resolved(self) -> dict[str, Any]:
        """The fully resolved spec, as recorded in every result file."""
        return {
            "task": self.file.name,
            "version": self.file.version,
            "family": self.file.family,
            "profile": self.profile,
            "spec": self.profile_spec().model_dump(mode="json"),
        }


def nested(dotted: str, value: Any) -> dict[str, Any]:
    """`a.b.c`, v -> {"a": {"b": {"c": v}}} (the overlay shape of one override)."""
    out: Any = value
    for part in reversed(dotted.split(".")):
        out = {part: out}
    return out


def apply_overrides(spec: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A spec (as data) with dotted-path overrides overlaid, in sorted key order. Runs and the run
    identity both go through here, so they can never resolve the same overrides differently."""
    for key, value in sorted(overrides.items()):
        spec = overlay(spec, nested(key, value))
    return spec


def _format_validation(path: Path, err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{path}: {where}: {first['msg']}{more}"


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (plain PyYAML keeps the last,
    so a duplicated dataset or `name:` would silently replace the first)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *anchor` merges may be overridden by the mapping's own keys
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            continue  # the base constructor reports unhashable keys itself
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"duplicate key {key!r} (first at line "
                f"{seen[key].line + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def strict_yaml_load(text: str):
    """yaml.safe_load, but a mapping key given twice is an error (task files, command-line values)."""
    return yaml.load(text, Loader=_StrictLoader)


def read_task_file(path: Path) -> TaskFile:
    try:
        raw = strict_yaml_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise BenchError(f"{path}: malformed YAML{at}: {getattr(exc, 'problem', exc)}") from None
    except OSError as exc:
        raise BenchError(f"cannot read task file {path}: {exc.strerror}") from None
    if not isinstance(raw, dict):
        raise BenchError(f"{path}: a task file must be a mapping at the top level")
    try:
        task_file = TaskFile.model_validate(raw)
    except ValidationError as err:
        raise BenchError(_format_validation(path, err)) from None
    for profile in task_file.profiles:  # validate every profile up front: a typo fails early
        _resolve_profile(task_file, profile, path)
    from bench.families import family_names

    if ":" not in task_file.family and task_file.family not in family_names():
        raise unknown(f"task family in {path}", task_file.family, family_names())
    return task_file


def _resolve_profile(task_file: TaskFile, profile: str, path: Path) -> ProfileSpec:
    merged = overlay(task_file.base, task_file.profiles[profile])
    try:
        return ProfileSpec.model_validate(merged)
    except ValidationError as err:
        raise BenchError(_format_validation(path, err).replace(f"{path}: ", f"{path}: profile {profile}: ", 1)) from None


def available_tasks() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in task_dirs():
        if folder.is_dir():
            for path in sorted(folder.glob("*.yaml")):
                found.setdefault(path.stem, path)
    return found


def load_task(name_or_path: str, profile: str = "paper") -> Task:
    path = Path(name_or_path)
    if not (path.suffix in {".yaml", ".yml"} and path.exists()):
        tasks = available_tasks()
        if name_or_path not in tasks:
            raise unknown("task", name_or_path, tasks)
        path = tasks[name_or_path]
    task_file = read_task_file(path)
    if profile not in task_file.profiles:
        raise unknown(f"profile for task {task_file.name}", profile, task_file.profiles)
    return Task(task_file, profile, _resolve_profile(task_file, profile, path), path)
