#!/usr/bin/env bash
# The generated leak hunt (issue 11 item 13) at benchmark size: random worlds x every caller
# kind x every read interaction, checked against the oracle in
# crates/policy/tests/leak_hunt.rs, in release mode. A benchmark run of a test: it prints the
# figures (cases, checks, time, leaks, over-withholding by caller / interaction / rule) and
# fails if any leak is found, printing the seed and case index to replay it.
#
#   bench/leak-hunt.sh [cases] [seed]     (default 1000000 cases; the test's fixed seed)
#
# Replay one case:  LEAK_HUNT_SEED=<seed> LEAK_HUNT_ONLY=<index> \
#                   cargo test -p scr-policy --test leak_hunt -- --nocapture
set -euo pipefail
cd "$(dirname "$0")/.."
export LEAK_HUNT_CASES=${1:-1000000}
if [ -n "${2:-}" ]; then export LEAK_HUNT_SEED=$2; fi
cargo build --release -q -p scr-policy --tests
cargo test --release -q -p scr-policy --test leak_hunt -- --nocapture 2>&1 |
  grep -Ev '^(running [0-9]+ tests?|test result:.*|\.*|)$'
