#!/usr/bin/env bash
# Start the benchmark peer (Helios FHIR Server, SQLite backend, FHIR R4).
#
#   start.sh PORT DATA_DIR
#
# Listens on 127.0.0.1:PORT with a fresh SQLite DB at DATA_DIR/peer.db, runs in
# the background with its working directory in DATA_DIR, writes its pid to
# DATA_DIR/peer.pid and its log to DATA_DIR/peer.log, and returns once
# GET /metadata answers (or fails after PEER_START_TIMEOUT s, default 30).
# Stop it with: kill "$(cat DATA_DIR/peer.pid)"   (or stop.sh DATA_DIR)
#
#   PEER_ROOT / PEER_BIN   as for build.sh (binary: $PEER_ROOT/bin/hfs)
#   PEER_LOG_LEVEL         default warn
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 PORT DATA_DIR" >&2
  exit 2
fi
PORT=$1
DATA_DIR=$2
PEER_ROOT=${PEER_ROOT:-$HOME/.cache/scr-peer}
BIN=${PEER_BIN:-$PEER_ROOT/bin/hfs}
SP_DIR=$PEER_ROOT/data
TIMEOUT=${PEER_START_TIMEOUT:-30}

[[ -x "$BIN" ]] || { echo "peer binary not found at $BIN: run bench/peer/build.sh" >&2; exit 1; }
[[ -s "$SP_DIR/search-parameters-r4.json" ]] ||
  { echo "missing $SP_DIR/search-parameters-r4.json: run bench/peer/build.sh" >&2; exit 1; }

mkdir -p "$DATA_DIR"
DATA_DIR=$(cd "$DATA_DIR" && pwd)
PIDFILE=$DATA_DIR/peer.pid
if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  echo "a peer is already running from $DATA_DIR (pid $(cat "$PIDFILE")); stop it first" >&2
  exit 1
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "port $PORT on 127.0.0.1 is already in use" >&2
  exit 1
fi

# Fresh database every start.
rm -f "$DATA_DIR"/peer.db "$DATA_DIR"/peer.db-wal "$DATA_DIR"/peer.db-shm "$PIDFILE"

cd "$DATA_DIR"
# Headless (no web UI / dashboard background work), no NL search, no auth,
# no audit (both off by default). Long request timeout for big load bundles.
# HFS_SEED_CONFORMANCE=false: do not copy the ~1,400 spec SearchParameters into
# the DB at every start (~200 MB of WAL); searches use the registry loaded from
# the data dir either way. Any other HFS_* variable set by the caller (e.g.
# HFS_DEFAULT_PAGE_SIZE, default 20) reaches the server unchanged.
HFS_LOG_LEVEL=${PEER_LOG_LEVEL:-warn} \
HFS_SEED_CONFORMANCE=${HFS_SEED_CONFORMANCE:-false} \
HFS_UI_ENABLED=false \
HFS_NL_SEARCH_ENABLED=false \
HFS_REQUEST_TIMEOUT=${PEER_REQUEST_TIMEOUT:-600} \
HFS_BASE_URL="http://127.0.0.1:$PORT" \
RUST_LOG=${PEER_RUST_LOG:-warn} \
  nohup "$BIN" \
    --host 127.0.0.1 --port "$PORT" \
    --database-url "$DATA_DIR/peer.db" \
    --data-dir "$SP_DIR" \
    --default-fhir-version R4 \
    >"$DATA_DIR/peer.log" 2>&1 </dev/null &
PID=$!
echo "$PID" >"$PIDFILE"

deadline=$((SECONDS + TIMEOUT))
while :; do
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "peer exited during startup; last log lines ($DATA_DIR/peer.log):" >&2
    tail -n 20 "$DATA_DIR/peer.log" >&2
    rm -f "$PIDFILE"
    exit 1
  fi
  if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/metadata" 2>/dev/null; then
    break
  fi
  if (( SECONDS >= deadline )); then
    echo "peer did not answer GET /metadata within ${TIMEOUT}s; killing pid $PID" >&2
    kill "$PID" 2>/dev/null || true
    tail -n 20 "$DATA_DIR/peer.log" >&2
    rm -f "$PIDFILE"
    exit 1
  fi
  sleep 0.2
done
echo "peer up: http://127.0.0.1:$PORT (pid $PID, db $DATA_DIR/peer.db)"
