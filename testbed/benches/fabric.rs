//! A UDP flow through LAN -> NAT -> public -> NAT -> LAN in the virtual fabric: smoltcp stacks
//! at both ends, two H16 translations, three segments with link emulation, the event loop.
//! Reported as datagrams per second of the bench thread's CPU time (issue 15's target:
//! 2,500,000; docs/scale.md): the engine runs on one core, and on a shared machine wall time
//! would also count the time the thread waited for it.
//!
//! Two smaller benches in the same run split the cost: `smoltcp_pair` is the two smoltcp
//! stacks alone (one sends, its packets are handed to the other, which receives), and
//! `udp_one_segment` is two hosts on one LAN of the fabric (stacks, one link, the engine, no
//! NAT).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../roles/benches/support/cpu_time.rs"]
mod cpu_time;

use binfm_stack::Time;
use binfm_stack::host::IpStack;
use binfm_testbed::engine::Network;
use binfm_testbed::events::EventLog;
use binfm_testbed::topology::Topology;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

const TOPOLOGY: &str = r#"
name = "bench"
[[segment]]
name = "lan-a"
subnet = "10.1.0.0/24"
delay = "1ms"
[[segment]]
name = "public"
subnet = "198.51.100.0/24"
delay = "10ms"
[[segment]]
name = "lan-b"
subnet = "10.2.0.0/24"
delay = "1ms"
[[nat]]
name = "nat-a"
inside = { segment = "lan-a", address = "10.1.0.1" }
outside = { segment = "public", address = "198.51.100.1" }
[[nat]]
name = "nat-b"
inside = { segment = "lan-b", address = "10.2.0.1" }
outside = { segment = "public", address = "198.51.100.2" }
[[host]]
name = "a"
segment = "lan-a"
address = "10.1.0.10"
gateway = "10.1.0.1"
[[host]]
name = "b"
segment = "lan-b"
address = "10.2.0.10"
gateway = "10.2.0.1"
"#;

const BATCH: u64 = 200;

/// The smoltcp ends of the flow, without the fabric: `a` sends a batch and is polled once,
/// its packets go straight into `b`, which is polled for each (in the fabric each arrives as
/// an event of its own) and takes the datagram from its socket.
fn smoltcp_pair(c: &mut Criterion) {
    let mut now = Time::ZERO;
    let mut a = IpStack::new(now, 1);
    let mut b = IpStack::new(now, 2);
    a.set_address(Some((Ipv4Addr::new(10, 1, 0, 10), 24)), None);
    b.set_address(Some((Ipv4Addr::new(10, 1, 0, 11), 24)), None);
    a.bind_udp(6000, 256 * 1024).unwrap();
    b.bind_udp(5000, 256 * 1024).unwrap();
    let dst = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 11), 5000);
    let payload = [0x5au8; 160];
    let (mut sent, mut got) = (0u64, 0u64);
    let mut group = c.benchmark_group("fabric");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("smoltcp_pair", |bench| {
        cpu_time::iter_cpu(bench, || {
            for _ in 0..BATCH {
                a.send_udp(None, 6000, dst, &payload).unwrap();
            }
            now += Duration::from_millis(1);
            a.poll(now);
            while let Some(p) = a.pop_tx() {
                b.push_rx(p);
                b.poll(now);
                while b.recv_udp_with(|_, _, p| p.len()).is_some() {
                    got += 1;
                }
            }
            sent += BATCH;
        })
    });
    group.finish();
    assert_eq!(got, sent, "every datagram must reach b");
}

/// A fabric with hosts `a` (UDP port 6000) and `b` (port 5000, a sink: its datagrams are
/// counted as `udp_no_service`), started (the benches then run it a second before timing).
struct Flow {
    net: Network<std::io::Sink>,
    a: usize,
    b: usize,
    until: Time,
    stop: AtomicBool,
    sent: u64,
}

impl Flow {
    fn new(text: &str, file: &str) -> (Flow, Topology) {
        let topo = Topology::from_str(text, Path::new(file)).unwrap();
        let mut net: Network<std::io::Sink> =
            Network::new(&topo, 1, None, EventLog::create(None).unwrap(), None).unwrap();
        let (a, b) = (topo.node_index("a").unwrap(), topo.node_index("b").unwrap());
        net.start().unwrap();
        net.nodes[a].ports[0]
            .stack
            .bind_udp(6000, 256 * 1024)
            .unwrap();
        net.nodes[b].ports[0]
            .stack
            .bind_udp(5000, 256 * 1024)
            .unwrap();
        let flow = Flow {
            net,
            a,
            b,
            until: Time::ZERO,
            stop: AtomicBool::new(false),
            sent: 0,
        };
        (flow, topo)
    }

    /// Runs the fabric `dt` of virtual time beyond the last run.
    fn run(&mut self, dt: Duration) {
        self.until = self.net.now().max(self.until) + dt;
        self.net.run_until(self.until, &self.stop).unwrap();
    }

    /// Queues a batch on `a` to `dst` (and, with `from_b`, one datagram from `b`), then runs
    /// the fabric 100 ms, enough for every packet to arrive.
    fn batch(&mut self, dst: SocketAddrV4, payload: &[u8], from_b: Option<(SocketAddrV4, &[u8])>) {
        for _ in 0..BATCH {
            self.net.nodes[self.a].ports[0]
                .stack
                .send_udp(None, 6000, dst, payload)
                .unwrap();
        }
        self.net.kick(self.a).unwrap();
        if let Some((to, bytes)) = from_b {
            self.net.nodes[self.b].ports[0]
                .stack
                .send_udp(None, 5000, to, bytes)
                .unwrap();
            self.net.kick(self.b).unwrap();
        }
        self.run(Duration::from_millis(100));
        self.sent += BATCH;
    }

    /// Fails unless `b` got every datagram of the batches.
    fn check_delivered(&self) {
        let delivered = self.net.nodes[self.b]
            .drops
            .get("udp_no_service")
            .copied()
            .unwrap_or(0);
        assert_eq!(delivered, self.sent, "every datagram must reach b");
    }
}

/// Two hosts on one LAN of the fabric: both stacks, one emulated link, the event loop.
fn udp_one_segment(c: &mut Criterion) {
    let text = r#"
name = "bench-lan"
[[segment]]
name = "lan"
subnet = "10.1.0.0/24"
delay = "1ms"
[[host]]
name = "a"
segment = "lan"
address = "10.1.0.10"
[[host]]
name = "b"
segment = "lan"
address = "10.1.0.11"
"#;
    let (mut flow, _) = Flow::new(text, "bench-lan.toml");
    flow.run(Duration::from_secs(1));
    let dst = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 11), 5000);
    let payload = [0x5au8; 160];
    let mut group = c.benchmark_group("fabric");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("udp_one_segment", |bench| {
        cpu_time::iter_cpu(bench, || flow.batch(dst, &payload, None))
    });
    group.finish();
    flow.check_delivered();
}

fn fabric(c: &mut Criterion) {
    let (mut flow, topo) = Flow::new(TOPOLOGY, "bench.toml");
    let nat_b = topo.node_index("nat-b").unwrap();
    // b opens its mapping on nat-b (the probe itself dies at nat-a: no mapping there).
    let probe = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 9);
    flow.net.nodes[flow.b].ports[0]
        .stack
        .send_udp(None, 5000, probe, b"open")
        .unwrap();
    flow.net.kick(flow.b).unwrap();
    flow.run(Duration::from_secs(1));
    let port = flow.net.nodes[nat_b]
        .nat()
        .unwrap()
        .mapping_for(SocketAddrV4::new(Ipv4Addr::new(10, 2, 0, 10), 5000))
        .unwrap();
    let dst = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 2), port);
    let payload = [0x5au8; 160];

    let mut group = c.benchmark_group("fabric");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("udp_lan_nat_public_nat_lan", |bench| {
        // b's keepalive keeps its nat-b mapping alive (120 s idle timeout) however many
        // iterations criterion runs.
        cpu_time::iter_cpu(bench, || {
            flow.batch(dst, &payload, Some((probe, b"keepalive")))
        })
    });
    group.finish();
    flow.check_delivered();
    eprintln!(
        "fabric: {} datagrams delivered to b; drops elsewhere: {:?}",
        flow.sent,
        flow.net
            .nodes
            .iter()
            .map(|n| (&n.name, &n.drops))
            .collect::<Vec<_>>()
    );
}

criterion_group!(benches, smoltcp_pair, udp_one_segment, fabric);
criterion_main!(benches);
