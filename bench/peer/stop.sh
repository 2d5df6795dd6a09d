#!/usr/bin/env bash
# Stop a peer started by start.sh:  stop.sh DATA_DIR
set -euo pipefail
[[ $# -eq 1 ]] || { echo "usage: $0 DATA_DIR" >&2; exit 2; }
PIDFILE=$1/peer.pid
[[ -f "$PIDFILE" ]] || { echo "no $PIDFILE" >&2; exit 0; }
PID=$(cat "$PIDFILE")
if kill "$PID" 2>/dev/null; then
  for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$PID" 2>/dev/null && kill -9 "$PID" 2>/dev/null || true
fi
rm -f "$PIDFILE"
echo "peer stopped (pid $PID)"
