#!/usr/bin/env bash
# Regenerates the tiny-profile results of the peft tuners given as config files
# (baselines/peft/<name>.json, `--method peft:<name>`; issue 35): six tuners besides LoRA (whose
# `peft:lora` config computes exactly as the built-in `lora`, tests/test_peft_tuners.py, so its
# committed results stand for it) on dit-transfer's eight stand-ins and limited-data's three, at the
# seeds the existing methods use (0, 1, 2). Cost, measured on 2 shared CPU cores: a dit-transfer run
# ~1.5 min, a limited-data run ~3.5 min, so 144 + 54 runs are about 6.5 CPU-hours; the queues run
# one thread each. Runs whose result exists are skipped, so the script can be re-run after an
# interruption (and across sessions: commit results/ as they finish).
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH="${BENCH:-bench}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
TUNERS="${TUNERS:-dora loha lokr oft vera ia3}"
. scripts/_queues.sh

jobs() {  # limited-data first (fewer runs), seed by seed
  for task in limited-data dit-transfer; do
    for seed in 0 1 2; do
      for t in $TUNERS; do
        echo "$BENCH run --task $task --method peft:$t --profile tiny --seeds $seed ${BENCH_RUN_FLAGS:-}"
      done
    done
  done
}
jobs | run_jobs
$BENCH leaderboard
$BENCH figures
