#!/usr/bin/env bash
# Regenerates the tiny-profile results of the corruption-sweep task (Chen et al. 2024 analog), three
# seeds each, one thread per run on two queues side by side:
#  1. the clean method pre-trained from scratch at every eta of the task's sweep (0-20%);
#  2. on clean data: CEP-U, CEP-G, fixed CEP-U (one delta per pair), IP, dropout, label smoothing;
#     random (per-draw) corruption at eta 5% beside the fixed draw;
#  3. downstream: full fine-tuning on two dit-transfer stand-ins (food101, artbench10) from the final
#     model of every clean run of step 1 (`--backbone-from`);
#  4. personalisation: a ControlNet beside each of those models (task corruption-controlnet), on
#     edge maps and on object masks of the source domain.
# About 8 minutes per pre-training run, 1.5 per downstream run and 2.5 per ControlNet run, so about
# 4 h on 2 idle CPU cores. Runs whose result exists are skipped, so the script can be re-run after an interruption.
# Each run records everything it needs; nothing is pre-built (pre-training starts from the run's
# seed; downstream runs need the source runs' checkpoints in this machine's cache).
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH="${BENCH:-bench}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
run() { $BENCH run --task corruption-sweep --profile tiny ${BENCH_RUN_FLAGS:-} "$@"; }

queue() {  # $1: the etas of this queue; every queue runs the seeds in order, so partial sets balance
  for s in 0 1 2; do
    for e in $1; do run --method clean --sweep "eta=$e" --seeds "$s"; done
    run --method "$2" --sweep eta=0 --seeds "$s"
  done
}
queue "0 5 10 20" cep-u & a=$!
queue "2.5 7.5 15" cep-g & b=$!
wait $a && wait $b

others() {  # $1: seeds of this queue
  for s in $1; do
    run --method ip --sweep eta=0 --seeds "$s"
    run --method dropout --sweep eta=0 --seeds "$s"
    run --method label-smoothing --sweep eta=0 --seeds "$s"
    run --method cep-u --set mode=fixed --sweep eta=0 --seeds "$s"
    run --method clean --sweep eta=5 --sweep corruption=random --seeds "$s"
  done
}
others "0 2" & a=$!
others "1" & b=$!
wait $a && wait $b

downstream() {  # $1: the dit-transfer stand-in
  for source in results/corruption-sweep@v1/tiny/clean/params.eta=*/source64/seed*.json; do
    $BENCH run --task dit-transfer --profile tiny --method full-ft --dataset "$1" --seeds 0 --backbone-from "$source"
  done
}
downstream food101 & a=$!
downstream artbench10 & b=$!
wait $a && wait $b

personalise() {  # $1: the condition (a dataset of corruption-controlnet)
  for source in results/corruption-sweep@v1/tiny/clean/params.eta=*/source64/seed*.json; do
    $BENCH run --task corruption-controlnet --profile tiny --method controlnet --dataset "$1" --seeds 0 \
      --backbone-from "$source"
  done
}
personalise edge & a=$!
personalise segmentation & b=$!
wait $a && wait $b
$BENCH figures
$BENCH leaderboard
