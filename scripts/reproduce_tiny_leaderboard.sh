#!/usr/bin/env bash
# Regenerates every tiny-profile number on LEADERBOARD.md with the project's own commands:
#   - full-ft and diff-tuning on all eight tiny datasets, seeds 0,1,2;
#   - every other method, alone and composed with diff-tuning, on three datasets, seeds 0,1,2;
#   - the chain-of-forgetting analysis for full-ft and diff-tuning on the three datasets, seed 0;
#   - then the leaderboard, tables, HTML page and figures.
# Runs whose result file exists are skipped, so the script can be re-run after an interruption.
# About 70 minutes on 2 CPU cores. Pass extra `bench run` flags through BENCH_RUN_FLAGS.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH="${BENCH:-bench}"
THREE="food101,cub200,artbench10"
SEEDS="0,1,2"
run() { $BENCH run --task dit-transfer --profile tiny --seeds "$SEEDS" ${BENCH_RUN_FLAGS:-} "$@"; }

run --method full-ft
run --method diff-tuning
for m in bitfit lora adaptformer vpt-deep difffit; do
  run --method "$m" --dataset "$THREE"
  run --method "$m+diff-tuning" --dataset "$THREE"
done
for m in full-ft diff-tuning; do
  $BENCH analyze chain-of-forgetting --task dit-transfer --profile tiny --method "$m" --dataset "$THREE" --seeds 0 \
    --fractions 0,0.2,0.4,0.6,0.8,1.0
done
$BENCH leaderboard
$BENCH figures
