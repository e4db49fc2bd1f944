//! NAT throughput: outbound and inbound translation of a 200-byte UDP packet on an established
//! mapping, and mapping creation. Target: ≥ 5 million outbound translations/s on one core.
//!
//! Each iteration restores the 28 header bytes from a template (the payload is never
//! touched by the NAT), so the measured cost is the translation plus a 28-byte copy.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use binfm_roles::nat::{Nat, NatConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etherparse::PacketBuilder;

const PUB: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const HEADERS: usize = 28;

fn udp200(src: SocketAddrV4, dst: SocketAddrV4) -> Vec<u8> {
    let b =
        PacketBuilder::ipv4(src.ip().octets(), dst.ip().octets(), 64).udp(src.port(), dst.port());
    let payload = [0x5au8; 200 - HEADERS];
    let mut v = Vec::with_capacity(200);
    b.write(&mut v, &payload).unwrap();
    assert_eq!(v.len(), 200);
    v
}

fn config() -> NatConfig {
    NatConfig::new(PUB, Ipv4Addr::new(10, 0, 0, 0), 8)
}

fn bench(c: &mut Criterion) {
    let private = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 100), 5000);
    let remote = SocketAddrV4::new(REMOTE, 3478);
    let now = Duration::from_secs(1);

    let mut g = c.benchmark_group("nat");
    g.throughput(Throughput::Elements(1));

    {
        let mut nat = Nat::new(config());
        let template = udp200(private, remote);
        let mut buf = template.clone();
        nat.outbound(now, &mut buf).unwrap();
        while nat.poll_event().is_some() {}
        g.bench_function("outbound_udp200_established", |b| {
            b.iter(|| {
                buf[..HEADERS].copy_from_slice(&template[..HEADERS]);
                black_box(nat.outbound(black_box(now), black_box(&mut buf[..])))
            })
        });
        assert_eq!(nat.drops().map(|(_, n)| n).sum::<u64>(), 0);
    }

    {
        let mut nat = Nat::new(config());
        nat.outbound(now, &mut udp200(private, remote)).unwrap();
        while nat.poll_event().is_some() {}
        let port = nat.mapping_for(private).unwrap();
        let template = udp200(remote, SocketAddrV4::new(PUB, port));
        let mut buf = template.clone();
        g.bench_function("inbound_udp200_established", |b| {
            b.iter(|| {
                buf[..HEADERS].copy_from_slice(&template[..HEADERS]);
                black_box(nat.inbound(black_box(now), black_box(&mut buf[..])))
            })
        });
        assert_eq!(nat.drops().map(|(_, n)| n).sum::<u64>(), 0);
    }

    // New private endpoint every iteration: H16, candidate checks, table inserts and the
    // mapping_created event (drained, as a driver would). A fresh NAT every 16384 mappings,
    // built outside the timed section.
    g.bench_function("mapping_creation", |b| {
        b.iter_custom(|iters| {
            let template = udp200(private, remote);
            let mut buf = template.clone();
            let mut total = Duration::ZERO;
            let mut done = 0u64;
            while done < iters {
                let mut nat = Nat::new(config());
                let batch = (iters - done).min(16_384);
                let start = Instant::now();
                for i in 0..batch {
                    buf[..HEADERS].copy_from_slice(&template[..HEADERS]);
                    // 10.0.x.y : 2000 + (i % 1000): 1000 endpoints per host (limit 1024).
                    let host = (i / 1000) as u16;
                    buf[14..16].copy_from_slice(&host.to_be_bytes());
                    buf[20..22].copy_from_slice(&(2000 + (i % 1000) as u16).to_be_bytes());
                    // Keep the header checksum valid after the source edit.
                    buf[10] = 0;
                    buf[11] = 0;
                    let ck = binfm_stack::checksum::checksum(&buf[..20]);
                    buf[10..12].copy_from_slice(&ck.to_be_bytes());
                    black_box(nat.outbound(now, &mut buf).unwrap());
                    while let Some(ev) = nat.poll_event() {
                        black_box(ev);
                    }
                }
                total += start.elapsed();
                assert_eq!(nat.mapping_count() as u64, batch);
                done += batch;
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
