#!/usr/bin/env bash
# Regenerates fewshot-corruption's tiny-profile results (task v2, issue 32): the noise calibration
# first (its own seed and evaluation prompts, never a reported run: `bench calibrate`), then the
# headline grid, five methods x 3 subjects x N in {1, 2, 6} x seeds 0-2 (135 runs), then BNN's
# sigma_init swept relative to each layer's weight scale (bnn+dreambooth, N = 1, 3 subjects x 3
# seeds per value: 54 runs). Cost on 2 CPU cores: a run ~40-90 s on one thread, so ~3.5 CPU-hours.
# Runs whose result exists are skipped (re-run after an interruption; commit results/ as they land).
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH="${BENCH:-bench}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
TASK="--task fewshot-corruption --profile tiny"
. scripts/_queues.sh

[[ -f calibration/fewshot-corruption@v2/tiny.json ]] ||
  $BENCH calibrate $TASK --method dreambooth --k 8

jobs() {  # one job per (method, seed); each runs every subject and N
  for seed in 0 1 2; do
    for m in dreambooth bnn+dreambooth lora bnn+lora bnn-norm+dreambooth; do
      echo "$BENCH run $TASK --method $m --seeds $seed"
    done
    echo "$BENCH run $TASK --method bnn+dreambooth --seeds $seed --sweep num_images=1" \
      "--set bnn.sigma_relative=true --sweep bnn.sigma_init=0.3,1"
  done
}
jobs | run_jobs
$BENCH leaderboard
$BENCH figures
