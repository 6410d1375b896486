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


def test_a_finished_bar_writes_its_last_line_once_and_pauses_leave_its_rate(monkeypatch):
    from bench.progress import paused

    log = io.StringIO()
    monkeypatch.setattr("sys.stderr", log)
    monkeypatch.setenv("BENCH_PROGRESS_INTERVAL", "0.05")
    bar = progress(range(6), desc="train", unit="step", leave=False, total=6)
    for i in bar:
        time.sleep(0.02)
        if i == 1:
            with paused(bar):  # e.g. the knowledge bank, built inside step 1
                time.sleep(0.5)
    bar.close()
    lines = log.getvalue().splitlines()
    assert sum("6/6" in line for line in lines) == 1
    assert time.time() - bar.start_t < 0.4  # the pause is not on the bar's clock


def test_phases_are_lines_in_the_log(monkeypatch):
    from bench.progress import phase

    log = io.StringIO()
    monkeypatch.setattr("sys.stderr", log)
    phase("ewc    diagonal Fisher of the pre-trained model on 16 samples (once; cached)")
    assert log.getvalue() == "ewc    diagonal Fisher of the pre-trained model on 16 samples (once; cached)\n"
