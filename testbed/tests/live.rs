//! Live mode. The first tests need no privileges (the kernel member and the mirror, driven in
//! virtual time); the others create a network namespace and TUN devices and print
//! `SKIPPED: <reason>` without CAP_NET_ADMIN/CAP_SYS_ADMIN, /dev/net/tun or `ip`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use binfm_testbed::driver::VirtualNet;
use binfm_testbed::events::EventLog;
use binfm_testbed::topology::Topology;
use std::net::Ipv4Addr;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// An ICMP echo request from `src` to `dst` (checksums filled in).
fn ping_packet(src: Ipv4Addr, dst: Ipv4Addr, seq: u16) -> Vec<u8> {
    let payload = [0x42u8; 32];
    let builder = etherparse::PacketBuilder::ipv4(src.octets(), dst.octets(), 64)
        .icmpv4_echo_request(0x1234, seq);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, &payload).unwrap();
    out
}

fn live_topology() -> Topology {
    Topology::load(&common::root().join("topologies/live-kernel.toml")).unwrap()
}

#[test]
fn kernel_member_gets_ping_replies_through_the_mirror() {
    let topo = live_topology();
    let mut net: VirtualNet<Vec<u8>> =
        VirtualNet::new(&topo, 1, None, EventLog::create(None).unwrap(), None).unwrap();
    net.attach_kernel();
    net.start().unwrap();
    let public = topo.segment_index("public").unwrap();
    let kernel = Ipv4Addr::new(198, 51, 100, 250);
    let echo = Ipv4Addr::new(198, 51, 100, 10);
    net.run_until(Duration::from_millis(100), &AtomicBool::new(false))
        .unwrap();
    net.drain_mirror();
    assert!(net.inject(public, ping_packet(kernel, echo, 1)).unwrap());
    net.run_until(Duration::from_millis(200), &AtomicBool::new(false))
        .unwrap();
    let mirrored = net.drain_mirror();
    let replies: Vec<_> = mirrored
        .iter()
        .filter(|(s, p)| {
            *s == public
                && etherparse::Ipv4HeaderSlice::from_slice(p)
                    .is_ok_and(|h| h.destination_addr() == kernel && h.protocol().0 == 1)
        })
        .collect();
    assert_eq!(
        replies.len(),
        1,
        "one echo reply for the kernel: {mirrored:?}"
    );
}
