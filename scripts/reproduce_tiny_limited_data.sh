#!/usr/bin/env bash
# Regenerates the tiny-profile results of the limited-data task (A3FT Table 1 analog): every method
# of the family on the three stand-in datasets, 3 seeds each, cFID tracked every 150 steps (the
# task's tracking section). Two queues side by side, one thread each (about an hour on 2 CPU
# cores). Runs whose result exists are skipped, so the script can be re-run after an interruption.
# The tiny source UNet it fine-tunes is built (once) by:
#   bench build-tiny source --task limited-data --steps 4000 --batch-size 64 --lr 5e-4
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH="${BENCH:-bench}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
METHODS="full-ft attention-ft a3ft lora bitfit"
run() { $BENCH run --task limited-data --profile tiny ${BENCH_RUN_FLAGS:-} "$@"; }

queue_a() {
  for m in $METHODS; do run --method "$m" --dataset celeba1000,pokemon --seeds 0,1; done
  for m in $METHODS; do run --method "$m" --dataset metfaces --seeds 2; done
}
queue_b() {
  for m in $METHODS; do run --method "$m" --dataset metfaces --seeds 0,1; done
  for m in $METHODS; do run --method "$m" --dataset celeba1000,pokemon --seeds 2; done
}
queue_a & a=$!
queue_b & b=$!
wait $a && wait $b
$BENCH leaderboard
$BENCH figures
