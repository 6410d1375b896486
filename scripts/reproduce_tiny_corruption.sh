#!/usr/bin/env bash
# Regenerates the tiny-profile results of the corruption-sweep task (Chen et al. 2024 analog), three
# seeds each, one thread per run on two queues side by side (scripts/_queues.sh):
#  1. the clean method pre-trained from scratch at every eta of the task's sweep (0-20%);
#  2. on clean data: CEP-U, CEP-G, fixed CEP-U (one delta per pair), IP, dropout, label smoothing;
#     random (per-draw) corruption at eta 5% beside the fixed draw;
#  3. downstream: full fine-tuning on all eight dit-transfer stand-ins from the final model of every
#     clean run of step 1 (`--backbone-from`);
#  4. personalisation: a ControlNet beside each of those models (task corruption-controlnet), on
#     edge maps and on object masks of the source domain (steps 3 and 4 run source by source).
# On an idle 2-core EPYC, about 4-8 minutes per pre-training run, 0.75-1.5 per downstream run and
# 2.5 per ControlNet run: 3-5 h in all. Runs whose result exists are skipped, so the script can be
# re-run after an interruption. Each run records everything it needs; nothing is pre-built
# (pre-training starts from the run's seed). Downstream runs read the source runs' checkpoints from
# this machine's cache: where it lacks them (a fresh clone of the committed results), the source is
# re-run with --force first, which rewrites its result bit for bit (`git diff` shows any change) and
# recreates the checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
export BENCH="${BENCH:-bench}" BENCH_RUN_FLAGS="${BENCH_RUN_FLAGS:-}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
. scripts/_queues.sh
run() { $BENCH run --task corruption-sweep --profile tiny $BENCH_RUN_FLAGS "$@"; }

pretraining() {  # seed by seed, so an interrupted sweep leaves whole seeds
  for s in 0 1 2; do
    for e in 0 2.5 5 7.5 10 15 20; do echo "run --method clean --sweep eta=$e --seeds $s"; done
    for m in cep-u cep-g; do echo "run --method $m --sweep eta=0 --seeds $s"; done
  done
  for s in 0 1 2; do
    echo "run --method ip --sweep eta=0 --seeds $s"
    echo "run --method dropout --sweep eta=0 --seeds $s"
    echo "run --method label-smoothing --sweep eta=0 --seeds $s"
    echo "run --method cep-u --set mode=fixed --sweep eta=0 --seeds $s"
    echo "run --method clean --sweep eta=5 --sweep corruption=random --seeds $s"
  done
}
export -f run
pretraining | run_jobs

# The committed sources were recorded with AVX2 kernels: on an AVX-512 machine their checkpoints
# are re-created bit for bit (the final state their downstream runs pin) only with every library's
# kernels pinned to AVX2 (bench/provenance.py, KERNEL_PINS); the downstream runs then match them too.
eval "$(${PYTHON:-python} - results/corruption-sweep@v1/tiny/clean/params.eta=0~*/source64/seed0.json <<'PY'
import json, shlex, sys
from bench.verify import kernel_pins
pins = kernel_pins(json.load(open(sys.argv[1]))) or {}
print(" ".join(f"export {k}={shlex.quote(v)};" for k, v in pins.items() if k != "OMP_NUM_THREADS"))
PY
)"

# Every clean source of step 1 (seeds in order).
sources() { for s in 0 1 2; do for e in 0 2.5 5 7.5 10 15 20; do ls results/corruption-sweep@v1/tiny/clean/params.eta="$e"~*/source64/seed"$s".json; done; done; }

from_source() {  # $1: a source result; the rest: a `bench run` that starts from it
  local source="$1" seed
  shift
  if ! $BENCH run "$@" --backbone-from "$source"; then  # most likely: this cache lacks its checkpoints
    seed=$(basename "$source" .json)
    run --method clean --sweep "eta=$(echo "$source" | sed -E 's/.*params\.eta=([^~]*)~.*/\1/')" --seeds "${seed#seed}" --force
    $BENCH run "$@" --backbone-from "$source"
  fi
}

downstream() {  # $1: one source; one job per source, so no source is re-run twice at once
  local source="$1"
  for d in food101 artbench10 cub200 caltech101 flowers102 stanford-cars sun397 df20m; do
    from_source "$source" --task dit-transfer --profile tiny --method full-ft --dataset "$d" --seeds 0
  done
  for c in edge segmentation; do
    from_source "$source" --task corruption-controlnet --profile tiny --method controlnet --dataset "$c" --seeds 0
  done
}
export -f from_source downstream
for source in $(sources); do echo "downstream $source"; done | run_jobs
$BENCH figures
$BENCH leaderboard
