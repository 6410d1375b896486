"""Progress in logs (no TTY): whole lines at the interval, nothing for bars shorter than it."""

from __future__ import annotations

import io
import time

from bench.progress import progress


def test_progress_in_a_log_is_plain_lines_at_the_interval(monkeypatch):
    log = io.StringIO()  # not a terminal
    monkeypatch.setattr("sys.stderr", log)
    monkeypatch.setenv("BENCH_PROGRESS_INTERVAL", "0.2")
    for _ in progress(range(30), desc="outer"):
        for _ in progress(range(2), desc="inner", leave=False):  # nested and short: silent
            time.sleep(0.01)
    out = log.getvalue()
    assert "\r" not in out and "\x1b" not in out
    lines = out.splitlines()
    assert lines and all(line.startswith("outer:") for line in lines)
    assert 2 <= len(lines) <= 10 and "30/30" in lines[-1]  # ~0.6 s at one line per 0.2 s, and the end
