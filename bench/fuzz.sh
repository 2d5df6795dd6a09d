#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ one after another, each for FUZZ_SECONDS (default 600),
# one process at a time (-jobs=1 -workers=1), and prints a summary: target, seconds, executions,
# crashes. Needs a nightly toolchain; installs cargo-fuzz when it is missing. See docs/fuzzing.md.
#
#   bench/fuzz.sh                          # every target, 10 minutes each
#   FUZZ_SECONDS=60 bench/fuzz.sh jws      # one target, one minute
#
# The corpus each run grows is fuzz/corpus/<target>/ (not in git), seeded from
# fuzz/seeds/<target>/; crashes land in fuzz/artifacts/<target>/ (not in git: each one becomes a
# unit test in the crate it crashed). Logs: fuzz/logs/<target>.log.
set -euo pipefail

cd "$(dirname "$0")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-600}
ALL=(hl7_parse_translate search_params jws mllp_framing flag_validation consent_validation)
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=("${ALL[@]}"); fi

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: a nightly toolchain is needed: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# The project crates have no `unsafe`, so AddressSanitizer would only slow each execution down:
# build with coverage instrumentation and debug assertions (overflow checks) only.
SANITIZER=${FUZZ_SANITIZER:-none}
cargo +nightly fuzz build --sanitizer "$SANITIZER"

mkdir -p fuzz/logs
summary=()
status=0
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    before=$(find "fuzz/artifacts/$t" -type f | wc -l)
    log="fuzz/logs/$t.log"
    started=$(date +%s)
    echo "== $t: ${FUZZ_SECONDS}s"
    # -jobs=1 runs the fuzzer in one child process whose output goes to fuzz-0.log in the
    # working directory; run from fuzz/logs so that it lands beside this target's log.
    rc=0
    ( cd fuzz/logs && rm -f fuzz-0.log &&
      cargo +nightly fuzz run --fuzz-dir .. --sanitizer "$SANITIZER" "$t" \
        "../corpus/$t" "../seeds/$t" -- \
        -max_total_time="$FUZZ_SECONDS" -jobs=1 -workers=1 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 ) >"$log" 2>&1 || rc=$?
    [ -f fuzz/logs/fuzz-0.log ] && { cat fuzz/logs/fuzz-0.log >>"$log"; rm -f fuzz/logs/fuzz-0.log; }
    seconds=$(( $(date +%s) - started ))
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
    after=$(find "fuzz/artifacts/$t" -type f | wc -l)
    crashes=$(( after - before ))
    summary+=("$(printf '%-20s %8s %14s %8s' "$t" "$seconds" "${execs:-?}" "$crashes")")
    if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
        status=1
        echo "   $t stopped (exit $rc); see $log and fuzz/artifacts/$t/"
    fi
done

printf '\n%-20s %8s %14s %8s\n' target seconds executions crashes
printf '%s\n' "${summary[@]}"
exit "$status"
