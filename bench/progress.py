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
import time
from contextlib import contextmanager

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


class _LogBar(tqdm):
    """tqdm for logs: a position is written once. The refresh at the last step and close() would
    otherwise both write the finished bar, the same line twice."""

    def display(self, msg=None, pos=None):
        if msg is None:
            if getattr(self, "_shown_n", None) == self.n:
                return True
            self._shown_n = self.n
        return super().display(msg, pos)


def phase(text: str) -> None:
    """One line, where the bars go, for a phase that is not the bar around it (building the
    knowledge bank, tracking, feature extraction, EWC's Fisher): a log shows what the time went
    on even when the phase's own bar ends within the interval and writes nothing."""
    tqdm.write(text, file=sys.stderr)  # on a terminal: above the live bars, not through them


@contextmanager
def paused(bar):
    """The bar's clock stopped for a while (a phase inside its loop): its rate and ETA count
    only its own work."""
    start = time.time()
    try:
        yield
    finally:
        if bar is not None and hasattr(bar, "start_t"):
            dt = time.time() - start
            bar.start_t += dt
            bar.last_print_t += dt


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
    return _LogBar(iterable, file=_Lines(sys.stderr), ascii=True, dynamic_ncols=False, ncols=100, **kwargs)
