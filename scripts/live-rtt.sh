#!/usr/bin/env bash
# Live delay fidelity: ping RTT across emulated links against the configured RTT.
#
# For each one-way link delay (default: 1ms 10ms 100ms), a live run where a host pings a
# virtual host on the same segment 100 times (every 200 ms); tcpdump records the echo requests
# and replies at the pinging host's TUN, and tshark's icmp.resptime gives each RTT with
# microsecond resolution. Prints, per delay, the median, p99 (nearest rank) and max of
# (RTT - 2 x delay).
#
# MODE `kernel-host` (default): the pinging host is a kernel host (its own namespace and TUN).
# MODE `kernel-address`: it is the testbed namespace's kernel on the segment's TUN (what
# older binfm versions offer, to compare).
#
# -B runs live mode with --busy-poll (the driver never sleeps).
# RTT_ALL=1 also prints each RTT error in the order of the pings.
#
# Needs root, tcpdump, tshark and ping (iputils-ping). About 25 s per delay.
# Usage: scripts/live-rtt.sh [-b BINFM] [-m MODE] [-B] [DELAY...]
set -euo pipefail
cd "$(dirname "$0")/.."
binfm=target/release/binfm
mode=kernel-host
extra=()
while getopts "b:m:B" opt; do
  case $opt in
    b) binfm=$OPTARG ;;
    m) mode=$OPTARG ;;
    B) extra=(--busy-poll) ;;
    *) echo "usage: $0 [-b BINFM] [-m kernel-host|kernel-address] [DELAY...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
delays=("$@")
[ ${#delays[@]} -gt 0 ] || delays=(1ms 10ms 100ms)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for delay in "${delays[@]}"; do
  ms=${delay%ms}
  if [ "$mode" = kernel-host ]; then
    pinger="[[host]]
name = \"k1\"
segment = \"public\"
kernel = { address = \"198.51.100.50\" }

[[scenario]]
at = \"500ms\"
do = \"exec k1 -- timeout 23 tcpdump -U -n -i tun0 -w $work/ping.pcap icmp\"

[[scenario]]
at = \"1500ms\"
do = \"exec k1 -- ping -c 100 -i 0.2 198.51.100.10\""
    kernel_address=""
  else
    pinger=""
    kernel_address='kernel_address = "198.51.100.50"'
  fi
  cat > "$work/rtt.toml" <<TOML
name = "rtt"
description = "Live delay fidelity: ping across one emulated link, $delay each way"
seed = 1
duration = "24s"

[[segment]]
name = "public"
subnet = "198.51.100.0/24"
delay = "$delay"
$kernel_address

[[host]]
name = "echo"
segment = "public"
address = "198.51.100.10"
echo_server = { port = 7 }

$pinger
TOML
  rm -f "$work/ping.pcap"
  if [ "$mode" = kernel-host ]; then
    "$binfm" run --live "${extra[@]}" "$work/rtt.toml" --out "$work/out" >/dev/null
  else
    "$binfm" run --live "${extra[@]}" "$work/rtt.toml" --out "$work/out" >/dev/null &
    run=$!
    for _ in $(seq 100); do ip netns exec binfm-rtt true 2>/dev/null && break; sleep 0.05; done
    sleep 0.5
    ip netns exec binfm-rtt timeout 23 tcpdump -U -n -i public -w "$work/ping.pcap" icmp 2>/dev/null &
    sleep 1
    ip netns exec binfm-rtt ping -q -c 100 -i 0.2 198.51.100.10 >/dev/null
    wait "$run"
  fi
  tshark -r "$work/ping.pcap" -Y "icmp.type == 0" -T fields -e icmp.resptime 2>/dev/null |
    python3 -c '
import sys, statistics, math
delay = float(sys.argv[1]); mode = sys.argv[2]
errs_in_order = [float(l) - 2 * delay for l in sys.stdin if l.strip()]
err = sorted(errs_in_order)
rank = lambda q: err[max(0, math.ceil(q * len(err)) - 1)]
import os
if os.environ.get("RTT_ALL"): print(" ".join(f"{e:.2f}" for e in errs_in_order))
print(f"{mode}, {delay:g} ms each way: {len(err)} replies; RTT - {2 * delay:g} ms: median {statistics.median(err):+.3f} ms, p99 {rank(0.99):+.3f} ms, max {err[-1]:+.3f} ms")
' "$ms" "$mode${extra[*]:+ ${extra[*]}}"
done
