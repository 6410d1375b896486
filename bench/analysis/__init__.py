"""Analyses of finished runs (they read a run's checkpoint; they never train). Each writes its own
result files under results/<task>@v<version>/<profile>/analysis/<analysis>/..., which reports read."""


def result_header(name: str, task, dataset: str, method: str) -> dict:
    """The keys every analysis result opens with (reports group and key them by these)."""
    from bench.results import SCHEMA_VERSION

    return {"schema": SCHEMA_VERSION, "analysis": name, "task": task.name, "task_version": task.file.version,
            "family": task.file.family, "profile": task.profile, "dataset": dataset, "method": method}
