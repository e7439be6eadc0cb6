#!/usr/bin/env bash
# The main job: a batch-orchestration service enqueues events in its own transactions on a real PostgreSQL, relays
# publish them to a real Kafka-protocol broker (tansu), and a consumer checks that exactly the committed events
# arrived, once each, in order per key. Extra arguments go to the demo, e.g. `scripts/demo.sh --events 50000`.
#
# Uses DATABASE_URL / KAFKA_BROKERS when both are set; otherwise starts throwaway services and stops them after.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${DATABASE_URL:-}" ] || [ -z "${KAFKA_BROKERS:-}" ]; then
  export OUTBOX_PG_PORT=${OUTBOX_PG_PORT:-55442} OUTBOX_KAFKA_PORT=${OUTBOX_KAFKA_PORT:-59192}
  trap 'scripts/services.sh down' EXIT
  scripts/services.sh down >/dev/null
  eval "$(scripts/services.sh up)"
fi

cargo build --release -q -p outbox-examples --bin batch_orchestrator
exec_status=0
target/release/batch_orchestrator "$@" || exec_status=$?
exit $exec_status
