"""The papers' reported numbers (reference/reported.yaml), schema-checked.

Every value keeps its source and how sure we are of it, so a number that was not read in the
paper itself is never shown as if it had been.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bench.errors import BenchError
from bench.paths import project_root

Confidence = Literal["seed", "transcribed", "unverified"]

# How each confidence level is marked next to a number (legend in every report).
MARKS = {"seed": "", "transcribed": "†", "unverified": "‡"}
LEGEND = {
    "seed": "read in the paper's own text",
    "transcribed": "† transcribed by a third party from the paper; not yet checked against the PDF",
    "unverified": "‡ unverified recollection; not confirmed from the paper",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Value(_Strict):
    value: float
    confidence: Confidence | None = None
    note: str | None = None


class Entry(_Strict):
    id: str
    paper: str
    source: str
    url: str | None = None
    confidence: Confidence
    task: str
    metric: str
    rows: dict[str, dict[str, float | Value]]

    @field_validator("rows")
    @classmethod
    def _non_empty(cls, rows):
        if not rows or any(not cells for cells in rows.values()):
            raise ValueError("every row needs at least one value")
        return rows


class ReportedFile(_Strict):
    schema_version: Literal[1] = Field(1, alias="schema")
    entries: list[Entry]


class ReportedValue(BaseModel):
    """One reported number, flattened, with everything a reader needs to judge it."""

    model_config = ConfigDict(frozen=True)
    task: str
    metric: str
    method: str
    dataset: str  # a dataset key, or "mean" for the paper's own average / headline
    value: float
    confidence: Confidence
    source: str
    entry: str
    note: str | None = None

    @property
    def mark(self) -> str:
        return MARKS[self.confidence]


def default_path() -> Path:
    return project_root() / "reference" / "reported.yaml"


def load_reported(path: Path | None = None) -> list[ReportedValue]:
    path = Path(path or default_path())
    if not path.exists():
        raise BenchError(f"reported numbers file {path} is missing")
    try:
        raw = yaml.safe_load(path.read_text())
        parsed = ReportedFile(**(raw or {}))
    except yaml.YAMLError as err:
        raise BenchError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise BenchError(f"{path}: {loc}: {first['msg']}") from None
    except TypeError as err:
        raise BenchError(f"{path}: {err}") from None
    ids = [e.id for e in parsed.entries]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise BenchError(f"{path}: duplicate entry ids {dupes}")
    out = []
    for e in parsed.entries:
        for method, cells in e.rows.items():
            for dataset, cell in cells.items():
                v = cell if isinstance(cell, Value) else Value(value=cell)
                out.append(ReportedValue(task=e.task, metric=e.metric, method=method, dataset=dataset,
                                         value=v.value, confidence=v.confidence or e.confidence,
                                         source=e.source, entry=e.id, note=v.note))
    seen: dict[tuple, str] = {}
    for r in out:
        k = (r.task, r.metric, r.method, r.dataset)
        if k in seen:
            raise BenchError(f"{path}: {r.task}/{r.metric}/{r.method}/{r.dataset} is reported twice "
                             f"({seen[k]} and {r.entry}); keep one")
        seen[k] = r.entry
    return out


_WEAKEST_LAST = ("seed", "transcribed", "unverified")


@dataclass(frozen=True)
class Implied:
    """A relative promotion computed from the papers' per-dataset numbers (not stated by them)."""

    value: float
    datasets: tuple[str, ...]
    confidence: Confidence  # the weakest of the numbers it reads: it is no surer than they are
    entries: tuple[str, ...]

    @property
    def mark(self) -> str:
        return MARKS[self.confidence]


def implied_promotion(values: Iterable[ReportedValue], method: str, baseline: str,
                      lower_is_better: bool = True) -> Implied | None:
    """Diff-Tuning's relative promotion, the mean over datasets of (baseline - method) / baseline,
    from the reported values of one metric, over the datasets both are reported on (a paper's own
    "mean" column is an average, not a dataset)."""
    by = {(v.method, v.dataset): v for v in values}
    pairs = [(by[(baseline, ds)], v) for (m, ds), v in by.items()
             if m == method and ds != "mean" and (baseline, ds) in by]
    if not pairs:
        return None
    sign = 1.0 if lower_is_better else -1.0
    rel = [sign * (b.value - v.value) / b.value for b, v in pairs]
    used = [x for pair in pairs for x in pair]
    return Implied(sum(rel) / len(rel), tuple(v.dataset for _, v in pairs),
                   max((x.confidence for x in used), key=_WEAKEST_LAST.index), tuple(sorted({x.entry for x in used})))
