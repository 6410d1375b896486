#!/usr/bin/env bash
# Regenerates every tiny-profile number of dit-transfer on LEADERBOARD.md with the project's own
# commands, in order of what the leaderboard needs first:
#   1. full-ft and diff-tuning on all eight tiny datasets, seed by seed (0..9, the task's seeds), so
#      an interrupted run leaves complete, paired seeds;
#   2. every other method, alone and composed with diff-tuning, on all eight datasets, seed by seed;
#   3. the chain-of-forgetting analysis for full-ft and diff-tuning on three datasets, seeds 0,1,2;
#   4. the leaderboard, tables, HTML page and figures.
# Two queues run side by side, one thread each (scripts/_queues.sh). A tiny run takes 1-2 minutes
# on one core (vpt-deep ~4: its 100 prompt tokens per block make the 64-token sequence 164 long),
# so part 1 is ~2.5 hours of CPU and the whole script ~15; runs whose result file
# exists are skipped, so it can be stopped and re-run. Pass extra `bench run` flags through
# BENCH_RUN_FLAGS; restrict the seeds with SEEDS="0 1 2".
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH="${BENCH:-bench}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
SEEDS="${SEEDS:-0 1 2 3 4 5 6 7 8 9}"
OTHERS="bitfit lora adaptformer vpt-deep difffit"
THREE="food101,cub200,artbench10"
RUN="$BENCH run --task dit-transfer --profile tiny ${BENCH_RUN_FLAGS:-}"
. scripts/_queues.sh

jobs() {
  for s in $SEEDS; do
    for m in full-ft diff-tuning; do echo "$RUN --method $m --seeds $s"; done
  done
  for s in $SEEDS; do
    for m in $OTHERS; do echo "$RUN --method $m --seeds $s"; echo "$RUN --method $m+diff-tuning --seeds $s"; done
  done
}
jobs | run_jobs
for m in full-ft diff-tuning; do
  $BENCH analyze chain-of-forgetting --task dit-transfer --profile tiny --method "$m" --dataset "$THREE" --seeds 0,1,2 \
    --fractions 0,0.2,0.4,0.6,0.8,1.0
done
# Issue 30: per-timestep epsilon MSE (2 datasets x 2 seeds; --retrain rebuilds checkpoints this cache
# lacks) and the knowledge bank's quality, which the precondition bank-is-source-like reads.
$BENCH analyze eps-mse --task dit-transfer --profile tiny --dataset food101,cub200 --seeds 0,1 --retrain
$BENCH analyze bank-quality --task dit-transfer --profile tiny
$BENCH leaderboard
$BENCH figures
