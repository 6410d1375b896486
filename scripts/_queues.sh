# Sourced by the scripts/reproduce_tiny_*.sh scripts: one way to run a list of jobs on a few cores.
#
#   jobs_fn | run_jobs
#
# run_jobs reads one shell command per line on stdin and runs them QUEUES at a time (default 2,
# one thread each: OMP_NUM_THREADS=1), each started as soon as a slot frees (xargs -P). So no queue
# split is balanced by hand, and jobs start in list order: an interrupted script leaves the
# earliest jobs (the first seeds) complete. A job is evaluated by a fresh bash, so a script shares
# its helper functions with `export -f`. Every job runs even if one fails; run_jobs then fails
# (xargs exits 123), and, as the scripts skip runs whose result exists, a re-run redoes only what
# is missing.
run_jobs() {
  tr '\n' '\0' | xargs -0 -P "${QUEUES:-2}" -n 1 bash -c 'eval "$1"' _  # -0: GNU and BSD xargs alike
}
