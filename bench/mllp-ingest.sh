#!/usr/bin/env bash
# Sustained HL7 v2 ingest over MLLP into the store, SQLite and PostgreSQL, with one and with
# eight sending connections. A benchmark, not a test: it prints numbers and asserts nothing but
# that every message was acknowledged AA.
#
#   bench/mllp-ingest.sh [messages]        (default 20000; PostgreSQL at $PG_URL or 127.0.0.1)
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-20000}
pg_admin=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
cargo build --release -q -p scr-cli
cargo build --release -q -p scr-mllp --example mllp_load
scr=target/release/scr
load=target/release/examples/mllp_load
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

run_backend() {
  local name=$1 config=$2 port=$3
  "$scr" mllp --config "$config" >"$work/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 50); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.2; done
  for c in 1 8; do
    printf '%-10s %d connection(s): ' "$name" "$c"
    "$load" "127.0.0.1:$port" --connections "$c" --messages "$messages"
  done
  kill $pid; wait $pid 2>/dev/null || true
}

config() { # store url, mllp port
  cat <<TOML
[server]
bind = "127.0.0.1:1"
base_url = "http://127.0.0.1:1/fhir"
[store]
url = "$1"
pool_size = 16
[auth]
dev_issuer = true
[hl7]
facilities = ["RXK"]
[mllp]
bind = "127.0.0.1:$2"
[policy]
sensitive_valuesets = ["$PWD/fhir-profiles/ValueSet-scr-sensitive-codes.json"]
objection_valueset = "$PWD/fhir-profiles/ValueSet-scr-objection-codes.json"
consent_valueset = "$PWD/fhir-profiles/ValueSet-scr-consent-codes.json"
TOML
}

config "sqlite://$work/store.db" 12601 >"$work/sqlite.toml"
"$scr" migrate --config "$work/sqlite.toml" >/dev/null
run_backend sqlite "$work/sqlite.toml" 12601

db=scr_bench_mllp_$$
psql "$pg_admin" -q -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
config "${pg_admin%/*}/$db" 12602 >"$work/pg.toml"
"$scr" migrate --config "$work/pg.toml" >/dev/null
run_backend postgres "$work/pg.toml" 12602
psql "$pg_admin" -q -c "DROP DATABASE $db WITH (FORCE)"
