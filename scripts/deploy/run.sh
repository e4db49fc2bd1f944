#!/usr/bin/env bash
# BINFM daemons in podman containers: 3 super nodes (SN) and 2 end nodes (EN), each EN behind
# a real Linux NAT (a container running the kernel's nft `masquerade random`), and a call
# between the two ENs. See docs/deploy.md.
#
#   1. builds the base image `localhost/binfm-deploy-base:<suite>-<hash>` with debootstrap +
#      podman import (no registry; cached), then `localhost/binfm-deploy:<binary hash>` =
#      base + the release binary (podman build with a COPY only; cached);
#   2. creates network namespaces binfm-deploy-<pid>-* (a switch with a Linux bridge for the
#      public segment 198.51.100.0/24, sn1..sn3, nat-a, nat-b, en-a, en-b), joined by veth
#      pairs made from inside them; nothing in the root namespace;
#   3. runs every node as a container with `--network ns:/run/netns/NAME`: the NAT containers
#      load nat.nft; the SNs peer by address; the ENs know their NAT's public address and the
#      SN list, guess their port with H16 and learn the real one from the SN;
#   4. the kernel's masquerade gives address-and-port-dependent filtering, but BINFM needs
#      endpoint-independent filtering at the callee's NAT (docs/protocol.md, "Calls"): once
#      each EN has registered, the NAT container adds what a full-cone NAT does for the
#      mapping the kernel made (inbound UDP to that public port goes to the EN; the EN's
#      later flows keep that port). BINFM_DEPLOY_FULL_CONE=0 leaves them out (the call then
#      cannot reach the callee);
#   5. A calls B (`binfm ctl call`), holds the call, hangs up, stops every node with SIGTERM
#      (the ENs write their WAVs), prints the registrations, the NATs' conntrack entries,
#      the frames both ways and the WAV sizes;
#   6. removes the containers and namespaces on every exit path and checks that the root
#      namespace (links, routes, ip_forward, nft ruleset) is as before.
#
# Needs root, podman, runc, debootstrap, jq. Environment: BINFM_DEPLOY_BIN (default: the
# repository's target/release/binfm; not built here), BINFM_DEPLOY_OUT (output folder, kept;
# default a new /tmp/binfm-deploy.XXXX), BINFM_DEPLOY_CALL_SECS (default 20),
# BINFM_DEPLOY_FULL_CONE (default 1), BINFM_DEPLOY_MIRROR (Debian mirror for debootstrap;
# default: the first URI of the host's apt sources), BINFM_DEPLOY_SUITE (default bookworm).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

suite=${BINFM_DEPLOY_SUITE:-bookworm}
packages=iproute2,procps,nftables,conntrack
bin=${BINFM_DEPLOY_BIN:-$repo/target/release/binfm}
call_secs=${BINFM_DEPLOY_CALL_SECS:-20}
full_cone=${BINFM_DEPLOY_FULL_CONE:-1}

# shellcheck source=../lib/podman.sh
. "$repo/scripts/lib/podman.sh"

[ "$(id -u)" = 0 ] || die "needs root (rootful podman, ip netns, debootstrap)"
for cmd in podman runc debootstrap jq ip; do
    command -v "$cmd" >/dev/null || die "\`$cmd\` is missing (apt-get install podman runc debootstrap jq iproute2)"
done
[ -x "$bin" ] || die "no binary $bin (build it with cargo build --release, or set BINFM_DEPLOY_BIN)"

out=${BINFM_DEPLOY_OUT:-$(mktemp -d /tmp/binfm-deploy.XXXX)}
mkdir -p "$out"
work=$(mktemp -d)
p=binfm-deploy-$$ # prefix of every namespace and container of this run
nodes=(sn1 sn2 sn3 nat-a nat-b en-a en-b)
namespaces=()
containers=()

podman_conf

cleanup() {
    local c n
    set +e
    for c in $(jobs -p); do kill "$c" 2>/dev/null; done # our own background sleep, if any
    for c in "${containers[@]}"; do
        podman_ rm -f -t 2 --ignore "$c" >/dev/null 2>&1
    done
    for n in "${namespaces[@]}"; do
        ip netns del "$n" 2>/dev/null
    done
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# The root namespace's state (scripts/lib/podman.sh) and this run's namespaces, if any.
root_state() {
    root_ns_state
    ip netns list | grep "^$p-" || true
}
root_state >"$out/root-before"

# --- 1. The images. ---------------------------------------------------------------------
tag=$(printf '%s %s' "$suite" "$packages" | sha256sum | cut -c1-12)
base="localhost/binfm-deploy-base:$suite-$tag"
debootstrap_image "$base" "$suite" "$packages" "${BINFM_DEPLOY_MIRROR:-}" BINFM_DEPLOY_MIRROR
image="localhost/binfm-deploy:$(sha256sum "$bin" | cut -c1-12)"
if podman_ image exists "$image"; then
    say "image $image (cached)"
else
    say "building $image: $base + $bin"
    mkdir "$work/context"
    cp "$bin" "$work/context/binfm"
    podman_ build --quiet --pull=never --network none --build-arg BASE="$base" \
        -f "$here/Containerfile" -t "$image" "$work/context" >/dev/null
    rm -rf "$work/context"
fi
podman_ run --rm --network none "$image" binfm --version

# --- 2. Namespaces and links (all inside namespaces of this run). -----------------------
say "namespaces $p-{sw,${nodes[*]// /,}}"
nsx() {
    local n=$1
    shift
    ip netns exec "$p-$n" "$@"
}
for n in sw "${nodes[@]}"; do
    ip netns add "$p-$n"
    namespaces+=("$p-$n")
    nsx "$n" ip link set lo up
    nsx "$n" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1
done
# The public segment: a bridge inside the switch namespace, one veth per public node.
nsx sw ip link add br0 type bridge
nsx sw ip link set br0 up
link_public() { # NODE IFNAME ADDRESS
    nsx sw ip link add "p-$1" type veth peer name "$2" netns "$p-$1"
    nsx sw ip link set "p-$1" master br0 up
    nsx "$1" ip addr add "$3/24" dev "$2"
    nsx "$1" ip link set "$2" up
}
link_public sn1 eth0 198.51.100.11
link_public sn2 eth0 198.51.100.12
link_public sn3 eth0 198.51.100.13
link_public nat-a pub 198.51.100.1
link_public nat-b pub 198.51.100.2
# The private segments: NAT <-> EN. The ENs only have a route to the public segment.
link_private() { # NAT EN NAT-ADDRESS EN-ADDRESS
    nsx "$1" ip link add lan type veth peer name eth0 netns "$p-$2"
    nsx "$1" ip addr add "$3/24" dev lan
    nsx "$1" ip link set lan up
    nsx "$2" ip addr add "$4/24" dev eth0
    nsx "$2" ip link set eth0 up
    nsx "$2" ip route add 198.51.100.0/24 via "$3"
}
link_private nat-a en-a 10.1.0.1 10.1.0.100
link_private nat-b en-b 10.2.0.1 10.2.0.100
nsx nat-a sysctl -q -w net.ipv4.ip_forward=1
nsx nat-b sysctl -q -w net.ipv4.ip_forward=1

# --- 3. The containers. ---------------------------------------------------------------
fill() { # TEMPLATE OUT KEY=VALUE...
    local t=$1 o=$2 kv s
    s=$(cat "$t")
    shift 2
    for kv in "$@"; do s=${s//@${kv%%=*}@/${kv#*=}}; done
    printf '%s\n' "$s" >"$o"
}
run() { # NODE PODMAN-RUN-ARGS...: a detached container in the node's namespace, /deploy = its folder
    local n=$1
    shift
    mkdir -p "$out/$n"
    containers+=("$p-$n")
    podman_ run -d --name "$p-$n" --network "ns:/run/netns/$p-$n" -v "$out/$n:/deploy" \
        "$@" >/dev/null
}
ctl() { # NODE COMMAND...
    podman_ exec "$p-$1" binfm ctl "/deploy/$1.sock" "${@:2}"
}
status() { ctl "$1" status 2>/dev/null | jq -c .status 2>/dev/null || echo null; }
wait_for() { # SECONDS WHAT COMMAND...: until COMMAND succeeds (status 1 after SECONDS)
    local what=$2 end=$((SECONDS + $1))
    shift 2
    while ((SECONDS < end)); do
        "$@" && return 0
        sleep 0.2
    done
    echo "timed out waiting for $what" >&2
    return 1
}

nat_ready() { podman_ exec "$p-$1" nft list table ip binfm_nat >/dev/null 2>&1; }
say "NAT containers (nft masquerade random)"
for n in nat-a nat-b; do
    net=10.1.0.0/24
    [ "$n" = nat-b ] && net=10.2.0.0/24
    mkdir -p "$out/$n"
    fill "$here/nat.nft.in" "$out/$n/nat.nft" PRIVATE_NET="$net"
    run "$n" --cap-add NET_ADMIN "$image" sh -c 'nft -f /deploy/nat.nft && exec sleep 600'
done
for n in nat-a nat-b; do
    wait_for 10 "the ruleset of $n" nat_ready "$n" || die "$n did not load its ruleset"
    podman_ exec "$p-$n" nft list ruleset
done

say "super nodes sn1..sn3 (198.51.100.11-13, UDP 7400, peers by address)"
for i in 1 2 3; do
    peers=()
    for j in 1 2 3; do [ "$j" = "$i" ] || peers+=("\"198.51.100.1$j:7400\""); done
    mkdir -p "$out/sn$i"
    fill "$here/sn.toml.in" "$out/sn$i/sn$i.toml" NAME="sn$i" ID="$i" LISTEN="198.51.100.1$i" \
        PEERS="$(
            IFS=,
            echo "${peers[*]}" | sed 's/,/, /g'
        )"
    run "sn$i" "$image" binfm node super-node --config "/deploy/sn$i.toml"
done
for i in 1 2 3; do
    wait_for 15 "sn$i" test -S "$out/sn$i/sn$i.sock" || die "sn$i did not start"
done
cat "$out/sn1/sn1.toml"

say "end nodes en-a (10.1.0.100 behind nat-a) and en-b (10.2.0.100 behind nat-b), UDP 7401"
sn_list() { printf '"198.51.100.1%s:7400", ' "$@" | sed 's/, $//'; }
mkdir -p "$out/en-a" "$out/en-b"
fill "$here/en.toml.in" "$out/en-a/en-a.toml" NAME=en-a LISTEN=10.1.0.100 NAT=198.51.100.1 \
    SNS="$(sn_list 1 2 3)" TONE=440
fill "$here/en.toml.in" "$out/en-b/en-b.toml" NAME=en-b LISTEN=10.2.0.100 NAT=198.51.100.2 \
    SNS="$(sn_list 2 3 1)" TONE=660
run en-a "$image" binfm node end-node --config /deploy/en-a.toml
run en-b "$image" binfm node end-node --config /deploy/en-b.toml
cat "$out/en-a/en-a.toml"
registered() { [ "$(status "$1" | jq -r '.registered.seq // 0')" -ge 1 ]; }
wait_for 30 "the registration of en-a" registered en-a || die "en-a did not register"
wait_for 30 "the registration of en-b" registered en-b || die "en-b did not register"

# --- 4. What the NATs and the SNs saw. ----------------------------------------------------
say "registrations: the H16 guess, the SN's EndpointMismatch, the registered endpoint"
declare -A public_port
for n in en-a en-b; do
    nat=nat-a
    [ "$n" = en-b ] && nat=nat-b
    grep -h '"kind":"en.register\(ed\)\?"\|"kind":"en.endpoint_corrected"' "$out/$n/$n.jsonl" | head -n 4
    s=$(status "$n")
    echo "$n status.registered: $(jq -c .registered <<<"$s")"
    guess=$(grep -m1 '"kind":"en.register"' "$out/$n/$n.jsonl" | jq -r .fields.nat)
    reg=$(jq -r .registered.public <<<"$s")
    echo "$n: H16 guess $guess, registered (learned from the SN) $reg"
    echo "$nat conntrack (udp, the kernel's mapping of the EN):"
    podman_ exec "$p-$nat" conntrack -L -p udp 2>/dev/null | tee "$out/$nat/conntrack-registered.txt"
    port=$(grep -o "src=198.51.100.1[123] dst=${reg%:*} sport=7400 dport=[0-9]*" "$out/$nat/conntrack-registered.txt" |
        head -n 1 | sed 's/.*dport=//')
    [ -n "$port" ] || die "no conntrack entry of $n's flow to its super node in $nat"
    [ "${reg%:*}:$port" = "$reg" ] || die "$n registered $reg, but $nat mapped it to ${reg%:*}:$port"
    [ "$reg" != "$guess" ] || die "$n: the kernel chose the H16 port by chance; run again"
    echo "$n: the registered endpoint $reg is $nat's conntrack mapping (reply dport $port)"
    public_port[$n]=$port
done
grep -h '"kind":"sn.endpoint_mismatch"' "$out"/sn?/sn?.jsonl | head -n 2

if [ "$full_cone" = 1 ]; then
    say "full-cone rules for the kernel's mappings (endpoint-independent filtering and mapping)"
    for n in en-a en-b; do
        nat=nat-a pub=198.51.100.1 priv=10.1.0.100
        [ "$n" = en-b ] && nat=nat-b pub=198.51.100.2 priv=10.2.0.100
        port=${public_port[$n]}
        podman_ exec "$p-$nat" nft add rule ip binfm_nat prerouting iifname pub \
            udp dport "$port" dnat to "$priv:7401"
        podman_ exec "$p-$nat" nft insert rule ip binfm_nat postrouting oifname pub \
            ip saddr "$priv" udp sport 7401 snat to "$pub:$port"
        podman_ exec "$p-$nat" nft list table ip binfm_nat
    done
else
    say "no full-cone rules (BINFM_DEPLOY_FULL_CONE=0): the kernel's filtering only"
fi

# --- 5. The call. ---------------------------------------------------------------------
b_addr=$(status en-b | jq -r .hash_addr)
a_addr=$(status en-a | jq -r .hash_addr)
echo "en-a is $a_addr, en-b is $b_addr"
height() { [ "$(status sn1 | jq -r '.height // 0')" -ge "$1" ]; }
wait_for 30 "a block above the registrations" height 3 || die "sn1 mined no blocks"
# The NATs' conntrack events and the UDP datagrams their own stacks found no socket for
# (Udp NoPorts: addressed to the NAT's public address at a port no mapping or rule takes).
for nat in nat-a nat-b; do
    podman_ exec -d "$p-$nat" sh -c 'exec conntrack -E -p udp -o timestamp >/deploy/conntrack-events.txt 2>&1' >/dev/null
done
noports() { nsx "$1" awk '/^Udp:/ { if (h) print $3; h = 1 }' /proc/net/snmp; }
declare -A noports_before
for nat in nat-a nat-b; do noports_before[$nat]=$(noports "$nat"); done
say "en-a calls en-b: binfm ctl en-a.sock call $b_addr"
ctl en-a call "$b_addr" | jq -c .
frames() { # NODE: "sent received" of its first call
    status "$1" | jq -r '[.calls[0].frames_sent // 0, .calls[0].frames_received // 0] | map(tostring) | join(" ")'
}
both_ways() {
    local a b
    read -r a b <<<"$(frames en-a)"
    [ "$a" -gt 50 ] && [ "$b" -gt 50 ]
}
call_ok=1
if ! wait_for 20 "audio both ways" both_ways; then
    call_ok=0
    echo "no audio both ways after 20 s"
fi
if [ "$call_ok" = 1 ]; then
    echo "audio both ways; holding the call ${call_secs} s"
    sleep "$call_secs" &
    wait $! # a signal ends the wait at once (the trap cleans up)
fi
for n in en-a en-b; do
    status "$n" | jq . >"$out/$n/status-in-call.json"
    echo "$n: $(jq -c '{registered: .registered.public, calls: [.calls[] | {peer: .peer[0:16], frames_sent, frames_received, frames_lost, jitter_ms, delay_ms_median}]}' "$out/$n/status-in-call.json")"
done
for nat in nat-a nat-b; do
    echo "$nat conntrack during the call:"
    podman_ exec "$p-$nat" conntrack -L -p udp 2>/dev/null | tee "$out/$nat/conntrack-call.txt"
    echo "$nat conntrack events since the call (conntrack -E):"
    cut -c1-200 "$out/$nat/conntrack-events.txt"
    echo "$nat: Udp NoPorts +$(($(noports "$nat") - ${noports_before[$nat]})) since the call"
done
if [ "$call_ok" = 1 ]; then
    # A hangup is local (BINFM sends no "bye"): each side hangs up its own end.
    echo "binfm ctl en-a.sock hangup en-b: $(ctl en-a hangup "$b_addr" | jq -c .)"
    echo "binfm ctl en-b.sock hangup en-a: $(ctl en-b hangup "$a_addr" | jq -c .)"
fi
call_events() { # NODE: its call.* events, shortened
    jq -c 'select(.kind | startswith("call.")) | {kind, fields: (.fields | (if .peer then .peer = .peer[0:16] else . end))}' \
        "$out/$1/$1.jsonl"
}
for n in en-a en-b; do
    echo "$n call events:"
    call_events "$n"
done
for n in sn1 sn2 sn3; do
    echo "$n: $(status "$n" | jq -c '{height, tip: .tip[0:16]}')"
done

# --- 6. SIGTERM, results. -------------------------------------------------------------
say "stopping (SIGTERM): en-a, en-b, then the super nodes"
for n in en-a en-b sn1 sn2 sn3; do
    podman_ stop -t 10 "$p-$n" >/dev/null
    podman_ logs "$p-$n" >"$out/$n/$n.out" 2>&1 || true
    echo "$n exit status $(podman_ inspect -f '{{.State.ExitCode}}' "$p-$n")"
done
for n in en-a en-b; do
    echo "$n: $(call_events "$n" | grep call.ended | tail -n 1)"
done
ls -l "$out"/en-?/*.wav 2>/dev/null || echo "no WAV written"
for n in sn1 sn2 sn3; do
    echo "$n: $(grep -c '"kind":"sn.block_mined"' "$out/$n/$n.jsonl" || true) blocks mined; $(grep -h '"kind":"sn.tx_confirmed"' "$out/$n/$n.jsonl" | jq -r '"\(.fields.owner[0:16]) seq \(.fields.seq) confirmed at \(.fields.height)"' | paste -sd ';' -)"
done

cleanup_done() {
    local c
    for c in "${containers[@]}"; do podman_ rm -f -t 2 --ignore "$c" >/dev/null 2>&1 || true; done
    containers=()
    for c in "${namespaces[@]}"; do ip netns del "$c" 2>/dev/null || true; done
    namespaces=()
}
cleanup_done
root_state >"$out/root-after"
diff -u "$out/root-before" "$out/root-after" || die "the root network namespace changed"
say "root namespace unchanged (ip -o link, ip route, ip -6 route, ip_forward, nft ruleset, no $p-* namespace left)"
[ "$call_ok" = 1 ] || die "the call had no audio both ways (outputs in $out)"
for n in en-a en-b; do
    w=$(ls "$out/$n"/*.wav 2>/dev/null | head -n 1)
    [ -n "$w" ] && [ "$(stat -c %s "$w")" -gt $((44 + 2 * 8000 * 5)) ] || die "$n: no WAV of the call"
done
say "ok: the ENs registered the NATs' kernel-chosen ports and called with audio both ways (outputs in $out)"
