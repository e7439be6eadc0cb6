#!/usr/bin/env bash
# Starts, stops or describes the local services the demo and the tests use: a throwaway PostgreSQL cluster and a
# tansu Kafka-protocol broker, both on 127.0.0.1. Installs what is missing (PostgreSQL from Debian, tansu from
# the Rust package registry with cargo install, cached under ~/.cache/outbox-dev).
#
#   scripts/services.sh up     start both (idempotent), wait until they answer, print the export lines
#   scripts/services.sh down   stop both and remove their data
#   scripts/services.sh env    print `export DATABASE_URL=... KAFKA_BROKERS=...` for a shell: eval "$(scripts/services.sh env)"
#   scripts/services.sh tools  print `export TANSU_BIN=...` (tests that start and stop a broker of their own use it)
#
# Ports: OUTBOX_PG_PORT (default 55432), OUTBOX_KAFKA_PORT (default 59092); scripts/demo.sh uses 55442/59192,
# scripts/test.sh 55452/59292 and scripts/bench.sh 55462/59392 unless these are set. State lives in
# /tmp/outbox-services-<pg port>, owned by the checkout that started it: another checkout is refused, not obeyed.
set -euo pipefail

pg_port=${OUTBOX_PG_PORT:-55432}
# Outside the checkout: the postgres user must reach the data directory, and a clone may sit under /root.
state=${OUTBOX_STATE_DIR:-/tmp/outbox-services-$pg_port}
kafka_port=${OUTBOX_KAFKA_PORT:-59092}
cache=${OUTBOX_CACHE:-$HOME/.cache/outbox-dev}
tansu_version=0.6.0
tansu_bin="$cache/tansu-$tansu_version/bin/tansu"
pg_bin=${OUTBOX_PG_BIN:-}

log() { printf '[services] %s\n' "$*" >&2; }

checkout=$(cd "$(dirname "$0")/.." && pwd)

# Services belong to the checkout that started them: another checkout on the same ports must not reuse or stop
# them (pick other ports with OUTBOX_PG_PORT / OUTBOX_KAFKA_PORT instead).
alive() {
  local pid
  pid=$(cat "$state/tansu.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then return 0; fi
  pid=$(head -n 1 "$state/pg/postmaster.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then return 0; fi
  return 1
}

check_owner() {
  if [ -f "$state/owner" ] && [ "$(cat "$state/owner")" != "$checkout" ] && ! alive; then
    log "removing stale service state of another checkout ($(cat "$state/owner")): nothing of it is running"
    rm -rf "$state"
  fi
  if [ -f "$state/owner" ] && [ "$(cat "$state/owner")" != "$checkout" ]; then
    log "ports $pg_port/$kafka_port are used by services of another checkout ($(cat "$state/owner"))."
    log "choose other ports, e.g. OUTBOX_PG_PORT=$((pg_port + 100)) OUTBOX_KAFKA_PORT=$((kafka_port + 100)) $0 $1"
    exit 1
  fi
}

find_pg_bin() {
  if [ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ]; then return; fi
  for d in /usr/lib/postgresql/*/bin; do
    if [ -x "$d/initdb" ]; then pg_bin=$d; fi
  done
  if [ -z "$pg_bin" ]; then
    log "PostgreSQL binaries not found; installing Debian's postgresql package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    for d in /usr/lib/postgresql/*/bin; do
      if [ -x "$d/initdb" ]; then pg_bin=$d; fi
    done
  fi
  [ -n "$pg_bin" ] || { log "could not find or install PostgreSQL"; exit 1; }
}

ensure_tansu() {
  if [ -x "$tansu_bin" ]; then return; fi
  log "building tansu $tansu_version with the dynostore (memory) engine; this takes a few minutes once, then it is cached in $cache"
  mkdir -p "$cache"
  CARGO_PROFILE_DEV_DEBUG=0 CARGO_TARGET_DIR="$cache/tansu-target" \
    cargo install tansu --version "$tansu_version" --locked --features dynostore --debug \
      --root "$cache/tansu-$tansu_version" >&2
  rm -rf "$cache/tansu-target"
}

pg_url() { echo "postgres://postgres@127.0.0.1:$pg_port/outbox"; }
kafka_brokers() { echo "127.0.0.1:$kafka_port"; }

pg_up() {
  find_pg_bin
  local data="$state/pg"
  if [ -f "$data/postmaster.pid" ] && runuser -u postgres -- "$pg_bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    return
  fi
  mkdir -p "$state"
  chmod 755 "$state"
  echo "$checkout" > "$state/owner"
  if [ ! -f "$data/PG_VERSION" ]; then
    rm -rf "$data"
    install -d -o postgres -g postgres "$data"
    runuser -u postgres -- "$pg_bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
    cat >> "$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$data'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 256MB
# Tests compress minutes of queue churn into seconds; let autovacuum look often enough to keep up.
autovacuum_naptime = 1s
CONF
  fi
  runuser -u postgres -- "$pg_bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 30 start >/dev/null
  runuser -u postgres -- "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'outbox'" | grep -q 1 ||
    runuser -u postgres -- "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres outbox
  log "PostgreSQL up at $(pg_url)"
}

kafka_up() {
  ensure_tansu
  if [ -f "$state/tansu.pid" ] && kill -0 "$(cat "$state/tansu.pid")" 2>/dev/null; then
    return
  fi
  mkdir -p "$state"
  nohup "$tansu_bin" broker \
    --listener-url "tcp://127.0.0.1:$kafka_port" \
    --advertised-listener-url "tcp://127.0.0.1:$kafka_port" \
    --storage-engine memory://tansu/ >"$state/tansu.log" 2>&1 &
  echo $! >"$state/tansu.pid"
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$kafka_port") 2>/dev/null; then
      log "tansu up at $(kafka_brokers)"
      return
    fi
    sleep 0.1
  done
  log "tansu did not start; its log:"; tail -n 30 "$state/tansu.log" >&2; exit 1
}

down() {
  if [ -f "$state/tansu.pid" ]; then
    kill "$(cat "$state/tansu.pid")" 2>/dev/null || true
    rm -f "$state/tansu.pid"
  fi
  if [ -d "$state/pg" ]; then
    find_pg_bin
    runuser -u postgres -- "$pg_bin/pg_ctl" -D "$state/pg" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$state"
  log "services stopped"
}

print_tools() {
  ensure_tansu
  echo "export TANSU_BIN=$tansu_bin"
}

print_env() {
  echo "export DATABASE_URL=$(pg_url)"
  echo "export KAFKA_BROKERS=$(kafka_brokers)"
}

case "${1:-}" in
  up) check_owner up; pg_up; kafka_up; print_env ;;
  down) check_owner down; down ;;
  env) print_env ;;
  tools) print_tools ;;
  *) echo "usage: $0 up|down|env|tools" >&2; exit 2 ;;
esac
