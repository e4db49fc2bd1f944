#!/usr/bin/env bash
# Live delay fidelity: a kernel host pings a virtual host across a segment with 100 ms each
# way (configured RTT 200 ms), 100 pings; tcpdump inside the kernel host's namespace records
# the echo requests and replies at its TUN, and tshark's icmp.resptime gives each RTT with
# microsecond resolution. Prints median, p99 and max of (RTT - 200 ms). Needs root, udhcpc
# is not needed (the host has a static address); tcpdump and tshark are.
# Usage: scripts/live-rtt.sh [BINFM]   (default: target/release/binfm)
set -euo pipefail
cd "$(dirname "$0")/.."
binfm=${1:-target/release/binfm}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/rtt.toml" <<TOML
name = "rtt"
description = "Live delay fidelity: a kernel host pings a virtual host, 100 ms each way"
seed = 1
duration = "24s"

[[segment]]
name = "public"
subnet = "198.51.100.0/24"
delay = "100ms"

[[host]]
name = "echo"
segment = "public"
address = "198.51.100.10"
echo_server = { port = 7 }

[[host]]
name = "k1"
segment = "public"
kernel = { address = "198.51.100.50" }

[[scenario]]
at = "500ms"
do = "exec k1 -- timeout 23 tcpdump -U -n -i tun0 -w $work/k1.pcap icmp"

[[scenario]]
at = "1500ms"
do = "exec k1 -- ping -c 100 -i 0.2 198.51.100.10"
TOML
"$binfm" run --live "$work/rtt.toml" --out "$work/out" >/dev/null
tshark -r "$work/k1.pcap" -Y "icmp.type == 0" -T fields -e icmp.resptime |
  python3 -c '
import sys, statistics
rtt = sorted(float(l) for l in sys.stdin if l.strip())
err = [r - 200.0 for r in rtt]
p = lambda q: err[max(0, min(len(err), -(-int(q * 100) * len(err) // 100)) - 1)]  # nearest rank
print(f"{len(rtt)} replies; RTT - 200 ms: median {statistics.median(err):+.3f} ms, p99 {p(0.99):+.3f} ms, max {err[-1]:+.3f} ms, min {err[0]:+.3f} ms")
'
