#!/usr/bin/env bash
# Runs every test in the workspace against real services: starts a throwaway PostgreSQL and a tansu broker,
# runs `cargo test --workspace --all-features` (so feature-gated code such as the `outbox` CLI is tested too),
# and stops them. Extra arguments go to cargo test (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

export OUTBOX_PG_PORT=${OUTBOX_PG_PORT:-55452} OUTBOX_KAFKA_PORT=${OUTBOX_KAFKA_PORT:-59292}
trap 'scripts/services.sh down' EXIT
scripts/services.sh down >/dev/null
eval "$(scripts/services.sh up)"
eval "$(scripts/services.sh tools)"

started=$(date +%s)
cargo test --workspace --all-features "$@"
echo "scripts/test.sh: tests took $(( $(date +%s) - started )) s"
