"""One exception type for every user-facing failure.

The CLI turns a BenchError into one line on stderr and exit code 2 (bad input) or 1 (a run that
failed, e.g. a diverging loss). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from typing import Iterable


class BenchError(Exception):
    exit_code = 2


class RunFailed(BenchError):
    """The input was fine but the run itself failed (NaN loss, ...)."""

    exit_code = 1


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"{hint} Known: {', '.join(choices)}."


def unknown(kind: str, name: str, choices: Iterable[str]) -> BenchError:
    return BenchError(f"unknown {kind} {name!r}{did_you_mean(name, choices)}")


# Every library a paper profile imports beyond the core install (controlnet_aux, transformers, ...):
# pyproject.toml's extra `paper`, pinned in constraints.txt.
PAPER_EXTRA_INSTALL = 'pip install -c constraints.txt -e ".[paper]"'


def missing_package(module: str, needed_by: str) -> BenchError:
    """The one-line error of a paper-profile import that is not installed: it names the extra."""
    return BenchError(f"{needed_by} needs the python package {module}, which is not installed; install the "
                      f"paper profiles' extra: `{PAPER_EXTRA_INSTALL}`")
