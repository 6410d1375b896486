#!/usr/bin/env bash
# Regenerates the tiny-profile results of the controlnet-convergence task (Diff-Tuning Table 2
# analog): `controlnet` and `controlnet+diff-tuning` on the five conditions, seeds 0-10 (sized by
# scripts/controlnet_power.py; docs/tiny-power.md): 110 runs, one thread each on two queues side by
# side (scripts/_queues.sh; about 2-3 minutes per run, so about 2.5 hours on 2 idle CPU cores).
# Runs whose result exists are skipped, so the script can be re-run after an interruption. The tiny backbone and condition estimators are the committed,
# sha256-pinned files (`bench build-tiny source --task controlnet-convergence`, `bench build-tiny
# conditions`); the Diff-Tuning knowledge bank is sampled once per condition and cached.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH="${BENCH:-bench}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
. scripts/_queues.sh

jobs() {  # seed by seed, both methods, so a partial set is paired
  for s in 0 1 2 3 4 5 6 7 8 9 10; do
    for m in controlnet controlnet+diff-tuning; do
      echo "$BENCH run --task controlnet-convergence --profile tiny ${BENCH_RUN_FLAGS:-} --method $m --seeds $s"
    done
  done
}
jobs | run_jobs
$BENCH figures
$BENCH leaderboard
