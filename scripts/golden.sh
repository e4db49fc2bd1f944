#!/usr/bin/env bash
# Golden outputs: recompute the sha256 of every output file of a fixed set of runs and compare
# them with scripts/golden.sha256, so a refactoring that changes behaviour is caught byte for byte.
#
#   scripts/golden.sh            compare the runs (paper.toml, both models, seeds 1-3; lan-nat.toml)
#   scripts/golden.sh --full     also the results.json of `binfm experiment topologies/paper.toml --runs 20`
#   scripts/golden.sh --record   write the hashes instead of comparing (add --full for the experiment)
#
# A deliberate change of an output is recorded in its own commit that says why.
set -euo pipefail
cd "$(dirname "$0")/.."

record=0
full=0
for arg in "$@"; do
    case "$arg" in
        --record) record=1 ;;
        --full) full=1 ;;
        *) echo "usage: scripts/golden.sh [--full] [--record]" >&2; exit 2 ;;
    esac
done

cargo build --release --quiet
# The binary cargo just built (CARGO_TARGET_DIR moves it out of ./target).
bin=${CARGO_TARGET_DIR:-target}/release/binfm
golden=scripts/golden.sha256
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# hash_dir NAME DIR: one "sha256  NAME/relative-path" line per output file, sorted.
hash_dir() {
    (cd "$2" && find . -type f \( -name capture.pcapng -o -name events.jsonl -o -name results.json -o -name '*.wav' \) \
        | LC_ALL=C sort | while read -r f; do
            printf '%s  %s/%s\n' "$(sha256sum "$f" | cut -d' ' -f1)" "$1" "${f#./}"
        done)
}

{
    for model in binfm vertical; do
        for seed in 1 2 3; do
            out="$work/paper-$model-$seed"
            "$bin" run topologies/paper.toml --model "$model" --seed "$seed" --out "$out" >/dev/null
            hash_dir "paper-$model-seed$seed" "$out"
        done
    done
    "$bin" run topologies/lan-nat.toml --seed 1 --out "$work/lan-nat" >/dev/null
    hash_dir "lan-nat-seed1" "$work/lan-nat"
    if [ "$full" = 1 ]; then
        "$bin" experiment topologies/paper.toml --runs 20 --out "$work/experiment" >/dev/null 2>&1
        printf '%s  %s\n' "$(sha256sum "$work/experiment/results.json" | cut -d' ' -f1)" "experiment-runs20/results.json"
    fi
} >"$work/now.sha256"

if [ "$record" = 1 ]; then
    if [ "$full" = 1 ]; then
        cp "$work/now.sha256" "$golden"
    else
        # keep the recorded experiment line, replace the rest
        { cat "$work/now.sha256"; grep ' experiment-' "$golden" 2>/dev/null || true; } >"$work/new"
        cp "$work/new" "$golden"
    fi
    echo "recorded $(wc -l <"$golden") hashes in $golden"
    exit 0
fi

expected="$work/expected"
if [ "$full" = 1 ]; then cp "$golden" "$expected"; else grep -v ' experiment-' "$golden" >"$expected"; fi
if diff -u "$expected" "$work/now.sha256" >"$work/diff"; then
    echo "golden: $(wc -l <"$expected") output files identical"
else
    cat "$work/diff"
    echo "golden: $(grep -c '^+[0-9a-f]' "$work/diff" || true) output files differ from $golden"
    exit 1
fi
