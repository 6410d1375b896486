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
