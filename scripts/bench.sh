#!/usr/bin/env bash
# The benchmark: starts the services, runs every measure against a raw baseline taken in the same run, prints a
# table, writes BENCHMARKS.md and prints one JSON object with every figure as its last line.
#   scripts/bench.sh           full run (100k drain, 1M backlog; several minutes)
#   scripts/bench.sh --quick   under two minutes (smaller backlogs, shorter rounds)
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
[ "${1:-}" = "--quick" ] && mode=quick
if [ -z "${DATABASE_URL:-}" ] || [ -z "${KAFKA_BROKERS:-}" ]; then
  export OUTBOX_PG_PORT=${OUTBOX_PG_PORT:-55462} OUTBOX_KAFKA_PORT=${OUTBOX_KAFKA_PORT:-59392}
  trap 'scripts/services.sh down' EXIT
  scripts/services.sh down >/dev/null
  eval "$(scripts/services.sh up)"
fi

cargo build --release -q -p outbox-tests --bench outbox
out=$(mktemp)
args=()
[ "$mode" = quick ] && args+=(--quick)
cargo bench -q -p outbox-tests --bench outbox -- "${args[@]}" | tee "$out"

cmd="scripts/bench.sh"; [ "$mode" = quick ] && cmd="scripts/bench.sh --quick"
{
  echo "# Benchmarks"
  echo
  echo "Produced by \`$cmd\` on $(date -u +%Y-%m-%d) ($(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB;"
  echo "PostgreSQL $(psql "$DATABASE_URL" -tAc 'show server_version' 2>/dev/null || echo '?') and tansu 0.6.0 on loopback, both on the same machine)."
  echo "Every ratio compares the outbox with a raw baseline measured in the same run on the same PostgreSQL and"
  echo "broker, because timings on a shared machine drift. Reproduce with the command above; \`--quick\` uses smaller"
  echo "backlogs and shorter rounds."
  echo
  grep '^|' "$out"
  echo
  echo "Figures as JSON (the command's last line):"
  echo
  echo '```json'
  tail -n 1 "$out"
  echo '```'
  if [ -f BENCHMARKS.notes.md ]; then echo; cat BENCHMARKS.notes.md; fi
} > BENCHMARKS.md
rm -f "$out"
