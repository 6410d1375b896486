"""Progress bars that read well where they are shown.

On an interactive terminal: tqdm's live bar. Anywhere else (CI logs, `> file`, a submitit job's
stderr): the same tqdm, refreshed at most every `BENCH_PROGRESS_INTERVAL` seconds (default 30) and
written as whole lines ("train lora:  40%| 120/300 [00:31<00:46, 3.9step/s, loss=0.12]"), one
per refresh and one when it ends, instead of thousands of carriage-return frames; a bar that ends
within the interval writes nothing.
"""

from __future__ import annotations

import os
import re
import sys

from tqdm.auto import tqdm


_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _Lines:
    """A stream wrapper that turns tqdm's carriage-return frames into one line per refresh."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        line = _ESCAPES.sub("", text.replace("\r", "")).rstrip()  # nested bars move the cursor
        if line:  # tqdm clears a finished bar with blanks: nothing to log
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def interactive(stream=None) -> bool:
    stream = stream or sys.stderr
    return hasattr(stream, "isatty") and stream.isatty()


def progress(iterable=None, **kwargs) -> tqdm:
    """tqdm with the suite's conventions (see the module docstring)."""
    if interactive():
        return tqdm(iterable, **kwargs)
    interval = float(os.environ.get("BENCH_PROGRESS_INTERVAL", "30"))
    kwargs.setdefault("delay", interval)  # bars that end sooner leave no line at all
    kwargs.setdefault("mininterval", interval)
    kwargs.setdefault("maxinterval", max(interval, 10.0))
    kwargs["leave"] = True  # the last line (where it stopped, how fast) stays in the log
    return tqdm(iterable, file=_Lines(sys.stderr), ascii=True, dynamic_ncols=False, ncols=100, **kwargs)
