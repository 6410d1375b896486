"""A family's own contribution to the reports: its LEADERBOARD section, tables and figures.

A family names its `StudyReport` in `Family.report` ("module:attribute", imported only when a
report is built). The report core (bench/report/build.py, figures.py, aggregate.py) asks every
registered family for one and never imports a study by name, so a new family adds its report
without touching the core. What every report shares (the metric tables against full fine-tuning,
the Diff-Tuning analyses, the plotting primitives in bench/report/plotting.py) stays in the core.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Callable

from bench.errors import BenchError
from bench.report.extras import SimpleTable, extras_markdown

if TYPE_CHECKING:
    from bench.report.load import Loaded, ResultSet
    from bench.report.plotting import FigureSpec
    from bench.report.reported import ReportedValue

# The generic figures of a section (bench/report/figures.py), and "sweeps": one figure per swept key.
GENERIC_FIGURES = ("convergence", "ewc", "efficiency", "frontier", "ablation", "chain-of-forgetting", "eps-mse",
                   "sweeps")


@dataclass(frozen=True)
class StudyReport:
    family: str  # the family's name (results record it)
    order: int  # where its LEADERBOARD section goes among the studies' (then by family name)
    tables: Callable[[ResultSet], list[SimpleTable]]
    # (results, its tables, figure links by section, reported values) -> its Markdown section
    section: Callable[[ResultSet, list[SimpleTable], dict, list[ReportedValue]], str]
    # (section, its runs and variants there, all results) -> its figures
    figures: Callable[[tuple, list[Loaded], ResultSet], list[FigureSpec]]
    # True: its tables replace the generic metric tables for its runs (steps to an event, not a metric)
    own_tables: bool = False
    # which generic figures its sections still draw, before its own (all of them by default)
    generic_figures: tuple[str, ...] = GENERIC_FIGURES


@lru_cache(maxsize=None)
def _load(target: str) -> StudyReport:
    module, _, attr = target.partition(":")
    try:
        report = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise BenchError(f"family report {target!r} cannot be imported: {exc}") from None
    if not isinstance(report, StudyReport):
        raise BenchError(f"family report {target!r} is not a bench.report.study.StudyReport")
    return report


def study_reports() -> list[StudyReport]:
    """Every registered family's report, in LEADERBOARD order."""
    from bench.families import family_class, family_names

    found = [_load(t) for t in (family_class(name).report for name in family_names()) if t]
    return sorted(found, key=lambda r: (r.order, r.family))


def study_markdown(title: str, question: str, answers: list[str], quoted: list[str],
                   tables: list[SimpleTable], links: dict, tag: str) -> str:
    """A study's own LEADERBOARD section: the question, its answers from the results, the papers'
    numbers quoted as reported (beside, never in a table), the tables and the figure links whose
    file name carries `tag`."""
    out = [f"## {title}", "", question, "", *answers, *quoted, "", extras_markdown(tables).rstrip("\n"), ""]
    for section in dict.fromkeys(t.section for t in tables):  # a section may have several tables
        for name, link in links.get(section, []):
            if tag in link:
                out.append(f"- [{name}]({link})")
    return "\n".join(out).rstrip("\n") + "\n"
