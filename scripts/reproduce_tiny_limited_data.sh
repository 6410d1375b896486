#!/usr/bin/env bash
# Regenerates the tiny-profile results of the limited-data task (A3FT Table 1 analog): every method
# of the family on the three stand-in datasets, 3 seeds each, cFID tracked every 150 steps (the
# task's tracking section). Two queues side by side, one thread each (scripts/_queues.sh; about an
# hour on 2 CPU cores). Runs whose result exists are skipped, so the script can be re-run after an interruption.
# The tiny source UNet it fine-tunes is built (once) by:
#   bench build-tiny source --task limited-data --steps 4000 --batch-size 64 --lr 5e-4
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH="${BENCH:-bench}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
METHODS="full-ft attention-ft a3ft lora bitfit"
RUN="$BENCH run --task limited-data --profile tiny ${BENCH_RUN_FLAGS:-}"
. scripts/_queues.sh

jobs() {  # seed by seed, so a partial set is paired across methods
  for s in 0 1 2; do
    for m in $METHODS; do echo "$RUN --method $m --dataset celeba1000,pokemon,metfaces --seeds $s"; done
  done
}
jobs | run_jobs
$BENCH leaderboard
$BENCH figures
