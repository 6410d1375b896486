#!/usr/bin/env bash
# Regenerates the tiny-profile results of the corruption-sweep task (Chen et al. 2024 analog): the
# clean method pre-trained from scratch at every eta of the task's sweep (0-20%), and CEP-U / CEP-G
# on the clean data, 3 seeds each: 27 runs, one thread each on two queues side by side (about
# 8 minutes per run, so about 1 h 50 min on 2 idle CPU cores). Runs whose result exists are skipped,
# so the script can be re-run after an interruption. Each run records everything it needs; nothing
# is pre-built (the model starts from the run's seed).
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
$BENCH figures
$BENCH leaderboard
