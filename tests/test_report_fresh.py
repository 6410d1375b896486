"""scripts/check_leaderboard_fresh.sh, the CI check that committed reports match results/: it
passes on freshly generated files and fails (with a diff) when a result or a table changed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from conftest import ROOT

from bench.tasks import load_task
from test_report import populate, write_result


def _check(root):
    env = {**os.environ, "PYTHON": sys.executable, "BENCH_ROOT": str(root)}
    return subprocess.run(["bash", str(root / "scripts" / "check_leaderboard_fresh.sh")], capture_output=True,
                          text=True, env=env, timeout=300)


def test_fresh_check_passes_then_catches_stale_reports(tmp_path):
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "check_leaderboard_fresh.sh", root / "scripts")
    shutil.copytree(ROOT / "tasks", root / "tasks")
    shutil.copytree(ROOT / "reference", root / "reference")
    populate(root / "results")
    env = {**os.environ, "BENCH_ROOT": str(root)}
    subprocess.run([sys.executable, "-m", "bench", "leaderboard", "--results", str(root / "results"), "--no-html"],
                   env=env, check=True, capture_output=True, cwd=root)
    assert (root / "LEADERBOARD.md").exists() and (root / "reports" / "tables" / "reproduced.csv").exists()
    ok = _check(root)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    write_result(root / "results", "full-ft", "cub200", 0, 12.5)  # a new result not in the committed board
    stale = _check(root)
    assert stale.returncode == 1 and "is stale" in stale.stderr and "+| **full-ft**" in stale.stdout

    subprocess.run([sys.executable, "-m", "bench", "leaderboard", "--results", str(root / "results"), "--no-html"],
                   env=env, check=True, capture_output=True, cwd=root)
    assert _check(root).returncode == 0
    tex = root / "reports" / "tables" / f"dit-transfer-v{load_task('dit-transfer', 'tiny').file.version}-tiny-fid.tex"
    tex.write_text(tex.read_text().replace("full-ft", "full-FT"))  # a hand edit of a table
    assert _check(root).returncode == 1
