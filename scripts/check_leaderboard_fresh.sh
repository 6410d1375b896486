#!/usr/bin/env bash
# CI check: LEADERBOARD.md and reports/tables/ must be exactly what `bench leaderboard` makes from
# the committed results/. Regenerates into a temporary folder and compares byte for byte; on a
# difference, prints the diff and the command that refreshes the committed files.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

"$PY" -m bench leaderboard --results-dir results --out "$tmp/LEADERBOARD.md" --tables-dir "$tmp/tables" \
  --figures-link reports/figures --no-html >/dev/null

status=0
diff -u LEADERBOARD.md "$tmp/LEADERBOARD.md" || status=1
diff -ru reports/tables "$tmp/tables" || status=1
if [ "$status" -ne 0 ]; then
  echo "LEADERBOARD.md or reports/tables/ is stale: run \`bench leaderboard\` and commit the result." >&2
  exit 1
fi
echo "LEADERBOARD.md and reports/tables/ match results/"
