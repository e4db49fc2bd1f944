#!/usr/bin/env bash
# Runs every fuzz target for N seconds (default 60) and prints executions per target.
#   scripts/fuzz.sh [seconds] [target...]
# Environment:
#   SANITIZER=address|none  (default address) `cargo fuzz -s`; `none` builds into
#                           fuzz/target/nosan so the two builds do not evict each other.
#   RUNS=N                  stop a target after N executions (or N seconds, whichever first).
#   FRESH=1                 start from the committed seeds only: delete what earlier runs
#                           added to fuzz/corpus/<target>/ (files not named seed-*).
# Needs a nightly toolchain; installs cargo-fuzz from crates.io if it is missing.
# Crashes land in fuzz/artifacts/<target>/; `cargo test -p binfm-fuzzing --test fuzz_corpus` replays them.
# The run of record (docs/fuzzing.md): SANITIZER=none FRESH=1 RUNS=1000000 scripts/fuzz.sh 1800 roles
set -uo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(dhcp_options toall_tx binfm_message block rtp_srtp topology roles stun vertical_message vertical_roles)
fi

sanitizer="${SANITIZER:-address}"
flags=(-s "$sanitizer")
if [ "$sanitizer" = none ]; then
    flags+=(--target-dir target/nosan)
fi
runs=()
if [ -n "${RUNS:-}" ]; then
    runs=(-runs="$RUNS")
fi

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz
(cd fuzz && cargo +nightly fuzz build "${flags[@]}") || exit 1

logs="fuzz/target/logs"
mkdir -p "$logs"
status=0
printf '%-17s %12s %10s %8s %14s %8s  %s\n' target executions exec/s seconds cov/ft corpus result
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    if [ "${FRESH:-0}" = 1 ]; then
        find "fuzz/corpus/$t" -type f ! -name 'seed-*' -delete
    fi
    log="$logs/$t.log"
    start=$(date +%s)
    (cd fuzz && cargo +nightly fuzz run "${flags[@]}" "$t" -- -max_total_time="$secs" "${runs[@]}" -print_final_stats=1) >"$log" 2>&1
    rc=$?
    took=$(( $(date +%s) - start ))
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1 | awk '{print $2 "/" $4}')
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    if [ $rc -eq 0 ]; then result=ok; else result="CRASH (see $log)"; status=1; fi
    printf '%-17s %12s %10s %8s %14s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$took" "${cov:-?}" "$corpus" "$result"
done
exit $status
