"""The committed LEADERBOARD.md and reports/tables/ are exactly what `bench leaderboard` makes
from the committed results/ (regenerated into a temporary folder and compared byte for byte)."""

import os
import subprocess
import sys

from conftest import ROOT


def test_committed_leaderboard_is_regenerated_from_results():
    assert (ROOT / "LEADERBOARD.md").exists() and any((ROOT / "results").rglob("seed*.json"))
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("BENCH_RESULTS", None)
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "check_leaderboard_fresh.sh")], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
