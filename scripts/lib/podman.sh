# Shared by scripts/ci-container/run.sh and scripts/deploy/run.sh (sourced, not run): podman
# as these machines need it, an image built without a registry, and the root namespace's
# network state to compare before and after. The caller sets `work` (a temporary folder) and
# `set -euo pipefail` before sourcing.

say() { printf '\n== %s\n' "$*"; }
die() {
    printf 'run.sh: %s\n' "$*" >&2
    exit 1
}

# Our own containers.conf: crun/runc may not raise RLIMIT_NOFILE here ("setrlimit ...
# Operation not permitted"), so no default ulimits. runc and cgroupfs: crun refuses the
# host's hybrid cgroup layout.
podman_conf() { printf '[containers]\ndefault_ulimits = []\n' >"$work/containers.conf"; }
podman_() { CONTAINERS_CONF="$work/containers.conf" podman --runtime runc --cgroup-manager cgroupfs "$@"; }

# The root namespace's links, routes, forwarding and firewall: a run must leave them as it
# found them.
root_ns_state() {
    ip -o link show | sed 's/ qlen [0-9]*//'
    ip route show
    ip -6 route show 2>/dev/null || true
    sysctl -n net.ipv4.ip_forward
    if command -v nft >/dev/null; then nft list ruleset 2>/dev/null || true; fi
}

# debootstrap_image IMAGE SUITE PACKAGES MIRROR MIRROR_VARIABLE: builds IMAGE with
# `debootstrap --variant=minbase --include=PACKAGES SUITE` and `podman import`, unless podman
# has it. MIRROR (may be empty) overrides the first URI of the host's apt sources;
# MIRROR_VARIABLE names the variable that sets it, for the error.
debootstrap_image() {
    local image=$1 suite=$2 packages=$3 mirror=$4 mirror_var=$5
    if podman_ image exists "$image"; then
        say "image $image (cached)"
        return
    fi
    [ -n "$mirror" ] || mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p; s/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\(http[^[:space:]]*\).*/\2/p' \
        /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | head -n 1 || true)
    [ -n "$mirror" ] || die "no Debian mirror found in the apt sources; set $mirror_var"
    say "building $image: debootstrap --variant=minbase --include=$packages $suite from $mirror"
    debootstrap --variant=minbase --include="$packages" "$suite" "$work/rootfs" "$mirror" \
        >"$work/debootstrap.log" 2>&1 || {
        tail -n 20 "$work/debootstrap.log" >&2
        die "debootstrap failed"
    }
    tar -C "$work/rootfs" -c . | podman_ import --quiet - "$image" >/dev/null
    rm -rf --one-file-system "$work/rootfs"
}
