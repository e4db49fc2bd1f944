#!/usr/bin/env bash
# Runs every fuzz target for N seconds (default 60) and prints executions per target.
#   scripts/fuzz.sh [seconds] [target...]
# Needs a nightly toolchain; installs cargo-fuzz from crates.io if it is missing.
# Crashes land in fuzz/artifacts/<target>/; `cargo test -p binfm-fuzzing --test fuzz_corpus` replays them.
set -uo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(dhcp_options toall_tx binfm_message block rtp_srtp topology roles stun vertical_message vertical_roles)
fi

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz
(cd fuzz && cargo +nightly fuzz build) || exit 1

logs="fuzz/target/logs"
mkdir -p "$logs"
status=0
printf '%-17s %12s %10s %8s  %s\n' target executions exec/s seconds result
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    log="$logs/$t.log"
    start=$(date +%s)
    (cd fuzz && cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -print_final_stats=1) >"$log" 2>&1
    rc=$?
    took=$(( $(date +%s) - start ))
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    if [ $rc -eq 0 ]; then result=ok; else result="CRASH (see $log)"; status=1; fi
    printf '%-17s %12s %10s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$took" "$result"
done
exit $status
