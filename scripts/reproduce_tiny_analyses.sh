#!/usr/bin/env bash
# Regenerates the tiny-profile numbers behind Diff-Tuning's analysis figures (issue: task families),
# 3 seeds each, with the project's own commands. Variants (tracked runs, sweeps) are keyed apart
# from the leaderboard's runs; the sweep figures take their default point from those runs
# (scripts/reproduce_tiny_leaderboard.sh).
#   - convergence (Fig. 5a): FID tracked every 75 steps, full-ft / diff-tuning / difffit, SUN397 stand-in;
#   - ablation (Fig. 5b): retention only (tau=0, bank kept) and reconsolidation only (no bank), DF20M stand-in;
#   - sensitivity of psi(t) = t^tau (Fig. 5c): tau in {0, 0.5, 2} (+ the default 1), Stanford Cars stand-in;
#   - knowledge-bank size (Fig. 5d): {125, 250, 1000} (+ the default 500), CUB stand-in;
#   - sampling steps used to build the bank (Fig. 6a-b): {5, 50} (+ the default 20), Stanford Cars stand-in.
# Two queues run side by side, one thread each (scripts/_queues.sh; about 45 minutes on 2 CPU cores). Runs whose result
# exists are skipped, so the script can be re-run after an interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH="${BENCH:-bench}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
RUN="$BENCH run --task dit-transfer --profile tiny --seeds 0,1,2 ${BENCH_RUN_FLAGS:-}"
. scripts/_queues.sh

jobs() {
  for m in full-ft diff-tuning difffit; do echo "$RUN --method $m --dataset sun397 --track 75"; done
  echo "$RUN --method diff-tuning --dataset df20m --sweep bank_ratio=0"
  echo "$RUN --method diff-tuning --dataset df20m --sweep tau=0 --set bank_tau=1"
  echo "$RUN --method diff-tuning --dataset stanford-cars --sweep tau=0,0.5,2"
  echo "$RUN --method diff-tuning --dataset cub200 --sweep knowledge_bank.num_images=125,250,1000"
  echo "$RUN --method diff-tuning --dataset stanford-cars --sweep knowledge_bank.steps=5,50"
}
jobs | run_jobs
$BENCH leaderboard
$BENCH figures
