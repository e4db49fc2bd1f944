#!/usr/bin/env bash
# Live mode in a throwaway container, without an image registry (see README.md here):
#
#   1. builds the image `localhost/binfm-live:<suite>-<hash>` once with debootstrap + podman
#      import (cached: skipped when podman already has it);
#   2. builds the `binfm` binary and the test binary of testbed/tests/live.rs on the host
#      (cargo test --no-run) and mounts the repository read-only at the same path, so the
#      paths compiled into the test binary hold inside the container;
#   3. runs, each in its own container with --network none:
#      a. the live tests with the flags live mode needs (none may print SKIPPED),
#      b. `binfm run --live topologies/live-kernel.toml` with those flags, pinging the echo
#         host from the kernel side of the TUN while it runs, and
#         `binfm run --live topologies/kernel-hosts.toml` (two kernel hosts get leases with
#         udhcpc, one sends a UDP datagram through its NAT and gets the echo, then moves),
#      c. the same run without the flags: it must refuse with one clear message,
#      d. the live tests without the flags: the privileged ones print SKIPPED;
#   4. checks that the host's root network namespace looks the same as before.
#
# Needs root, podman, runc and debootstrap (apt-get install podman runc debootstrap). Takes a
# few minutes (the first image build ~3 min); not part of .ci/run.
#
# Environment: BINFM_CI_MIRROR (Debian mirror for debootstrap; default: the first URI of the
# host's apt sources), BINFM_CI_SUITE (default bookworm).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
# shellcheck source=../lib/podman.sh
. "$repo/scripts/lib/podman.sh"

suite=${BINFM_CI_SUITE:-bookworm}
packages=iproute2,procps,iputils-ping,netcat-openbsd,util-linux,udhcpc,tshark
# Live mode: TUN devices and addresses (NET_ADMIN), `ip netns add` / setns (SYS_ADMIN), the TUN
# device file, and a writable /proc/sys (the namespace's sysctls; without it live mode stops at
# "sysctl: permission denied").
live_flags=(--cap-add NET_ADMIN --cap-add SYS_ADMIN --device /dev/net/tun
    --security-opt systempaths=unconfined)

[ "$(id -u)" = 0 ] || die "needs root (rootful podman, debootstrap)"
for cmd in podman runc debootstrap cargo; do
    command -v "$cmd" >/dev/null || die "\`$cmd\` is missing (apt-get install podman runc debootstrap)"
done

work=$(mktemp -d)
containers=()
cleanup() {
    local c
    for c in "${containers[@]}"; do
        podman_ rm -f --ignore "$c" >/dev/null 2>&1 || true
    done
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

podman_conf

# run_in NAME LOG PODMAN-RUN-ARGS...: one container named by us (removed on every exit path),
# its output shown and kept in $work/LOG; sets $status to its exit status.
status=0
run_in() {
    local name="binfm-ci-$$-$1" log="$work/$2"
    shift 2
    containers+=("$name")
    set +e
    podman_ run --name "$name" --network none -v "$repo:$repo:ro" "$@" 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    set -e
}

root_ns_state >"$work/root-before"

# 1. The image.
tag=$(printf '%s %s' "$suite" "$packages" | sha256sum | cut -c1-12)
image="localhost/binfm-live:$suite-$tag"
debootstrap_image "$image" "$suite" "$packages" "${BINFM_CI_MIRROR:-}" BINFM_CI_MIRROR

# 2. The binaries, built on the host.
say "building the live test binary (cargo test -p binfm-testbed --test live --no-run)"
live_test=$(cargo test -p binfm-testbed --test live --no-run --message-format=json 2>/dev/null |
    grep '"name":"live"' | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | tail -n 1 || true)
[ -x "$live_test" ] || die "no live test binary"
target=$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
binfm="$target/debug/binfm"
[ -x "$binfm" ] || die "no $binfm"
mounts=()
case "$target/" in
"$repo"/*) ;;
*) mounts=(-v "$target:$target:ro") ;;
esac

# 3a. Privileged live tests.
say "live tests, with: ${live_flags[*]}"
run_in tests tests.log "${live_flags[@]}" "${mounts[@]}" -w "$repo/testbed" "$image" \
    "$live_test" --test-threads=1 --nocapture
[ "$status" = 0 ] && grep -q '^test result: ok' "$work/tests.log" || die "live tests failed"
! grep -q 'SKIPPED' "$work/tests.log" || die "a live test skipped although it had the flags"

# 3b. A live run, pinged from the kernel side.
say "binfm run --live topologies/live-kernel.toml, with the same flags"
run_in livek livek.log "${live_flags[@]}" "${mounts[@]}" -w "$repo" "$image" sh -c "
    $binfm run --live topologies/live-kernel.toml --out /tmp/livek & pid=\$!
    for i in 1 2 3 4 5 6 7 8 9 10; do
        ip netns exec binfm-livek ip -br addr show public 2>/dev/null | grep -q 198.51.100.250 && break
        sleep 0.5
    done
    ip netns exec binfm-livek ping -c 3 -W 2 198.51.100.10; ping=\$?
    wait \$pid; run=\$?
    echo \"binfm exit status \$run, ping exit status \$ping\"
    echo \"binfm-* namespaces left: \$(ip netns list | grep -c binfm-)\"
    ls /tmp/livek
    [ \$run = 0 ] && [ \$ping = 0 ] && [ -z \"\$(ip netns list)\" ]"
[ "$status" = 0 ] || die "the live run failed"

# 3b'. Kernel hosts: udhcpc leases, a UDP program through the NAT, a move.
say "binfm run --live topologies/kernel-hosts.toml, with the same flags"
run_in kernel kernel.log "${live_flags[@]}" "${mounts[@]}" -w "$repo" "$image" sh -c "
    $binfm run --live topologies/kernel-hosts.toml --out /tmp/kernel; run=\$?
    echo \"binfm exit status \$run\"
    echo '--- k1 lease after its move:'; cat /tmp/kernel/kernel/k1/lease.env
    echo '--- exec outputs:'; cat /tmp/kernel/exec/*.stdout
    echo \"binfm-* namespaces left: \$(ip netns list | grep -c binfm-)\"
    [ \$run = 0 ] && grep -q 'hello from k1' /tmp/kernel/exec/*.stdout &&
        grep -q '^ip=10.3.0.100' /tmp/kernel/kernel/k1/lease.env && [ -z \"\$(ip netns list)\" ]"
[ "$status" = 0 ] || die "the kernel-host run failed"

# 3c. The refusal.
say "binfm run --live topologies/live-kernel.toml, WITHOUT the flags (must refuse)"
run_in refusal refusal.log "${mounts[@]}" -w "$repo" "$image" \
    "$binfm" run --live topologies/live-kernel.toml --out /tmp/livek
echo "exit status $status"
[ "$status" != 0 ] || die "live mode ran without its privileges"
grep -q 'live mode cannot run here' "$work/refusal.log" || die "no clear refusal message"
! grep -qi 'panicked\|backtrace' "$work/refusal.log" || die "the refusal is a panic"

# 3d. The live tests without the flags skip.
say "live tests, WITHOUT the flags (privileged ones print SKIPPED)"
run_in tests-noflags tests-noflags.log "${mounts[@]}" -w "$repo/testbed" "$image" \
    "$live_test" --test-threads=1 --nocapture
[ "$status" = 0 ] && grep -q '^test result: ok' "$work/tests-noflags.log" ||
    die "live tests failed without the flags"
grep -q 'SKIPPED' "$work/tests-noflags.log" || die "no test skipped without the flags"

# 4. The host.
root_ns_state >"$work/root-after"
diff -u "$work/root-before" "$work/root-after" || die "the root network namespace changed"
say "ok: live tests passed with the flags and skipped without; the root namespace is unchanged"
