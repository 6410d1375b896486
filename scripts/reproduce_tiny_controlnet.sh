#!/usr/bin/env bash
# Regenerates the tiny-profile results of the controlnet-convergence task (Diff-Tuning Table 2
# analog): `controlnet` and `controlnet+diff-tuning` on the five conditions, seeds 0-5 (sized by
# scripts/controlnet_power.py; docs/tiny-power.md): 60 runs, one thread each on two queues side by
# side (one queue per method; about 2-3 minutes per run, so about 85 minutes on 2 idle CPU cores). Runs whose result exists are skipped, so the script can be
# re-run after an interruption. The tiny backbone and condition estimators are the committed,
# sha256-pinned files (`bench build-tiny source --task controlnet-convergence`, `bench build-tiny
# conditions`); the Diff-Tuning knowledge bank is sampled once per condition and cached.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH="${BENCH:-bench}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
run() { $BENCH run --task controlnet-convergence --profile tiny ${BENCH_RUN_FLAGS:-} "$@"; }

queue() {  # every queue runs the seeds in order, so a partial set is balanced across methods
  for s in 0 1 2 3 4 5; do run --method "$1" --seeds "$s"; done
}
queue controlnet & a=$!
queue controlnet+diff-tuning & b=$!
wait $a && wait $b
$BENCH figures
$BENCH leaderboard
