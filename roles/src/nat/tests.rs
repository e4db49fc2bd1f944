//! NAT tests: packets are built with etherparse and every translated packet is re-parsed
//! with etherparse, whose from-scratch checksums must match our incremental ones.

use super::*;
use etherparse::{Icmpv4Type, NetHeaders, PacketBuilder, PacketHeaders, TransportHeader};
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};

const PUB: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const OTHER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
const A: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 100), 5000);
const B: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 2, 0, 7), 6000);

fn cfg() -> NatConfig {
    NatConfig::new(PUB, Ipv4Addr::new(10, 0, 0, 0), 8)
}

fn nat() -> Nat {
    Nat::new(cfg())
}

fn secs(s: u64) -> Time {
    Duration::from_secs(s)
}

fn sa(ip: Ipv4Addr, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip, port)
}

fn udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let b =
        PacketBuilder::ipv4(src.ip().octets(), dst.ip().octets(), 64).udp(src.port(), dst.port());
    let mut v = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut v, payload).unwrap();
    v
}

fn echo(src: Ipv4Addr, dst: Ipv4Addr, request: bool, id: u16, seq: u16) -> Vec<u8> {
    let b = PacketBuilder::ipv4(src.octets(), dst.octets(), 64);
    let b = if request {
        b.icmpv4_echo_request(id, seq)
    } else {
        b.icmpv4_echo_reply(id, seq)
    };
    let payload = b"ping payload";
    let mut v = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut v, payload).unwrap();
    v
}

/// Recomputes the IPv4 header checksum after a test edits the header.
fn fix_ip_checksum(p: &mut [u8]) {
    let ihl = usize::from(p[0] & 0x0f) * 4;
    p[10] = 0;
    p[11] = 0;
    let c = binfm_stack::checksum::checksum(&p[..ihl]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
}

/// One's complement has two zeros; a checksum of 0x0000 and one of 0xffff verify alike.
fn same_checksum(a: u16, b: u16) -> bool {
    a == b || (a | b == 0xffff && (a == 0 || b == 0))
}

#[derive(Debug, PartialEq)]
struct Seen {
    src: SocketAddrV4,
    dst: SocketAddrV4,
    ttl: u8,
    payload: Vec<u8>,
}

/// Parses with etherparse and asserts that the IPv4 and UDP/ICMP checksums equal a
/// from-scratch recomputation. For ICMP echo the "port" is the identifier.
fn check(p: &[u8]) -> Seen {
    let h = PacketHeaders::from_ip_slice(p).expect("etherparse parses the translated packet");
    let Some(NetHeaders::Ipv4(ip, _)) = h.net else {
        panic!("not IPv4")
    };
    assert!(
        same_checksum(ip.header_checksum, ip.calc_header_checksum()),
        "IPv4 header checksum"
    );
    let payload = h.payload.slice().to_vec();
    let src_ip = Ipv4Addr::from(ip.source);
    let dst_ip = Ipv4Addr::from(ip.destination);
    let (sp, dp) = match h.transport {
        Some(TransportHeader::Udp(u)) => {
            if u.checksum != 0 {
                let c = u.calc_checksum_ipv4(&ip, &payload).unwrap();
                assert!(
                    same_checksum(u.checksum, c),
                    "UDP checksum {:#x} vs {c:#x}",
                    u.checksum
                );
            }
            (u.source_port, u.destination_port)
        }
        Some(TransportHeader::Icmpv4(i)) => {
            assert!(
                same_checksum(i.checksum, i.icmp_type.calc_checksum(&payload)),
                "ICMP checksum"
            );
            match i.icmp_type {
                Icmpv4Type::EchoRequest(e) | Icmpv4Type::EchoReply(e) => (e.id, e.id),
                other => panic!("unexpected ICMP {other:?}"),
            }
        }
        other => panic!("unexpected transport {other:?}"),
    };
    Seen {
        src: sa(src_ip, sp),
        dst: sa(dst_ip, dp),
        ttl: ip.time_to_live,
        payload,
    }
}

fn drain(nat: &mut Nat) -> Vec<NatEvent> {
    std::iter::from_fn(|| nat.poll_event()).collect()
}

/// First private port on `ip` (from 1024) whose H16 satisfies `pred`.
fn find_port(ip: Ipv4Addr, pred: impl Fn(u16) -> bool) -> u16 {
    (1024..=u16::MAX)
        .find(|p| pred(h16(ip, *p)))
        .expect("small search space has a hit")
}

/// Expected port by the collision rule when only `taken` ports are held.
fn expected_port(ip: Ipv4Addr, port: u16, taken: &[u16]) -> (u16, u8) {
    (0..=REHASH_CANDIDATES)
        .map(|k| (h16_candidate(ip, port, k), k))
        .find(|(c, _)| *c >= MIN_PUBLIC_PORT && !taken.contains(c))
        .expect("one of 16 candidates is free")
}

#[test]
fn h16_known_answers() {
    // Independent computation of the definition: SHA-256 over ip bytes ‖ port (big-endian).
    let d = Sha256::digest([10, 1, 0, 100, 0x13, 0x88]);
    assert_eq!(
        h16(A.ip().to_owned(), 5000),
        u16::from_be_bytes([d[0], d[1]])
    );
    // Pinned literals (computed with Python's hashlib).
    assert_eq!(h16(Ipv4Addr::new(10, 1, 0, 100), 5000), 0x6a3e);
    assert_eq!(h16(Ipv4Addr::new(10, 0, 0, 1), 68), 0x8c10);
    assert_eq!(h16(Ipv4Addr::new(192, 0, 2, 1), 1), 0x5355);
    // c_1 hashes 7 bytes: ip ‖ port ‖ 0x01.
    let d1 = Sha256::digest([10, 1, 0, 100, 0x13, 0x88, 1]);
    assert_eq!(
        h16_candidate(Ipv4Addr::new(10, 1, 0, 100), 5000, 1),
        u16::from_be_bytes([d1[0], d1[1]])
    );
    assert_eq!(h16_candidate(Ipv4Addr::new(10, 1, 0, 100), 5000, 1), 64541);
    assert_eq!(h16_candidate(Ipv4Addr::new(10, 1, 0, 100), 5000, 0), 0x6a3e);
}

#[test]
fn udp_outbound_rewrites_source_to_h16_port() {
    let mut nat = nat();
    let mut p = udp(A, sa(REMOTE, 3478), b"hello");
    assert_eq!(nat.outbound(secs(0), &mut p), Ok(Translated::ToOutside));
    let s = check(&p);
    assert_eq!(s.src, sa(PUB, 0x6a3e));
    assert_eq!(s.dst, sa(REMOTE, 3478));
    assert_eq!(s.ttl, 64, "TTL is the driver's job");
    assert_eq!(s.payload, b"hello");
    assert_eq!(nat.mapping_for(A), Some(0x6a3e));
    let ev = drain(&mut nat);
    assert_eq!(ev.len(), 1);
    assert_eq!(
        ev[0],
        NatEvent::MappingCreated {
            protocol: Protocol::Udp,
            private: sa(Ipv4Addr::new(10, 1, 0, 100), 5000),
            public: sa(PUB, 27198),
            port_h16: 27198,
            collisions: 0,
            rule: "h16",
        }
    );
}

#[test]
fn eim_same_mapping_for_every_remote() {
    let mut nat = nat();
    for remote in [sa(REMOTE, 3478), sa(REMOTE, 9), sa(OTHER, 3478)] {
        let mut p = udp(A, remote, b"x");
        nat.outbound(secs(1), &mut p).unwrap();
        let s = check(&p);
        assert_eq!(s.src, sa(PUB, 0x6a3e));
        assert_eq!(s.dst, remote);
    }
    assert_eq!(nat.mapping_count(), 1);
    assert_eq!(drain(&mut nat).len(), 1);
}

#[test]
fn inbound_translates_to_private_endpoint() {
    let mut nat = nat();
    nat.outbound(secs(0), &mut udp(A, sa(REMOTE, 3478), b"q"))
        .unwrap();
    let mut r = udp(sa(REMOTE, 3478), sa(PUB, 0x6a3e), b"reply");
    assert_eq!(nat.inbound(secs(1), &mut r), Ok(()));
    let s = check(&r);
    assert_eq!(s.src, sa(REMOTE, 3478));
    assert_eq!(s.dst, A);
    assert_eq!(s.payload, b"reply");
    // Endpoint-independent filtering (default): a stranger may send too (Session Request).
    let mut r = udp(sa(OTHER, 777), sa(PUB, 0x6a3e), b"session request");
    assert_eq!(nat.inbound(secs(1), &mut r), Ok(()));
    assert_eq!(check(&r).dst, A);
    assert_eq!(nat.stats().inbound, 2);
}

#[test]
fn collision_second_endpoint_gets_a_later_candidate() {
    // Two private endpoints with the same H16 (≥ 1024): birthday search over a few ports.
    let ip = Ipv4Addr::new(10, 1, 0, 100);
    let mut seen: HashMap<u16, u16> = HashMap::new();
    let (p1, p2) = (1024..=u16::MAX)
        .find_map(|p| {
            let h = h16(ip, p);
            if h < MIN_PUBLIC_PORT {
                return None;
            }
            seen.insert(h, p).map(|first| (first, p))
        })
        .unwrap();
    let c0 = h16(ip, p1);
    assert_eq!(c0, h16(ip, p2));

    let mut nat = nat();
    nat.outbound(secs(0), &mut udp(sa(ip, p1), sa(REMOTE, 1), b""))
        .unwrap();
    let mut p = udp(sa(ip, p2), sa(REMOTE, 1), b"");
    nat.outbound(secs(0), &mut p).unwrap();
    let got = check(&p).src.port();
    let (want, k) = expected_port(ip, p2, &[c0]);
    assert!(k >= 1);
    assert_eq!(got, want);
    assert_ne!(got, c0, "REQ-3: no port overloading");
    assert_eq!(nat.mapping_for(sa(ip, p1)), Some(c0));
    let ev = drain(&mut nat);
    assert!(
        matches!(ev[1], NatEvent::MappingCreated { port_h16, collisions, rule: "rehash", .. }
            if port_h16 == c0 && collisions == u32::from(k)),
        "{ev:?}"
    );
}

#[test]
fn well_known_ports_are_never_allocated() {
    let ip = Ipv4Addr::new(10, 1, 0, 100);
    let port = find_port(ip, |h| h < MIN_PUBLIC_PORT);
    let mut nat = nat();
    let mut p = udp(sa(ip, port), sa(REMOTE, 53), b"");
    nat.outbound(secs(0), &mut p).unwrap();
    let got = check(&p).src.port();
    let (want, k) = expected_port(ip, port, &[]);
    assert!(got >= MIN_PUBLIC_PORT);
    assert_eq!(got, want);
    assert!(k >= 1);
    assert!(matches!(
        drain(&mut nat)[0],
        NatEvent::MappingCreated { collisions, .. } if collisions == u32::from(k)
    ));
}

#[test]
fn port_space_exhaustion_no_overloading_then_reclaim() {
    // Fills every public port 1024..=65535: exercises the rehash and the scan, proves
    // REQ-3 (no overloading) at scale and ends in PortsExhausted, never a panic.
    let mut c = cfg();
    c.max_mappings = 70_000;
    c.max_mappings_per_host = 70_000;
    let mut nat = Nat::new(c);
    let host = Ipv4Addr::new(10, 0, 0, 1);
    let mut ports = HashSet::new();
    let mut scans = 0;
    for port in 0..64_512u16 {
        let mut p = udp(sa(host, port), sa(REMOTE, 1), b"");
        nat.outbound(secs(0), &mut p).unwrap();
        let got = u16::from_be_bytes([p[20], p[21]]);
        assert!(got >= MIN_PUBLIC_PORT);
        assert!(ports.insert(got), "port {got} handed out twice");
        while let Some(ev) = nat.poll_event() {
            if matches!(ev, NatEvent::MappingCreated { rule: "scan", .. }) {
                scans += 1;
            }
        }
    }
    assert!(scans > 0, "a nearly full table needs the scan");
    assert_eq!(nat.mapping_count(), 64_512);
    let mut p = udp(sa(host, 64_512), sa(REMOTE, 1), b"");
    assert_eq!(
        nat.outbound(secs(1), &mut p),
        Err(DropReason::PortsExhausted)
    );
    assert_eq!(nat.drop_count(DropReason::PortsExhausted), 1);
    // Expired mappings count as free, even before handle_timeout removes them.
    let mut p = udp(sa(host, 64_512), sa(REMOTE, 1), b"");
    assert_eq!(nat.outbound(secs(120), &mut p), Ok(Translated::ToOutside));
    check(&p);
}

#[test]
fn address_dependent_filtering() {
    let mut c = cfg();
    c.filtering = Filtering::AddressDependent;
    let mut nat = Nat::new(c);
    nat.outbound(secs(0), &mut udp(A, sa(REMOTE, 3478), b""))
        .unwrap();
    let mut ok = udp(sa(REMOTE, 9999), sa(PUB, 0x6a3e), b"");
    assert_eq!(nat.inbound(secs(1), &mut ok), Ok(()));
    assert_eq!(check(&ok).dst, A);
    let mut bad = udp(sa(OTHER, 3478), sa(PUB, 0x6a3e), b"");
    assert_eq!(nat.inbound(secs(1), &mut bad), Err(DropReason::Filtered));
    assert_eq!(nat.drop_count(DropReason::Filtered), 1);
}

#[test]
fn address_and_port_dependent_filtering() {
    let mut c = cfg();
    c.filtering = Filtering::AddressAndPortDependent;
    let mut nat = Nat::new(c);
    nat.outbound(secs(0), &mut udp(A, sa(REMOTE, 3478), b""))
        .unwrap();
    let mut bad = udp(sa(REMOTE, 9999), sa(PUB, 0x6a3e), b"");
    assert_eq!(nat.inbound(secs(1), &mut bad), Err(DropReason::Filtered));
    let mut ok = udp(sa(REMOTE, 3478), sa(PUB, 0x6a3e), b"");
    assert_eq!(nat.inbound(secs(1), &mut ok), Ok(()));
    assert_eq!(check(&ok).dst, A);
}

#[test]
fn filter_remote_set_is_bounded_lru() {
    let mut c = cfg();
    c.filtering = Filtering::AddressAndPortDependent;
    let mut nat = Nat::new(c);
    let n = MAX_REMOTES_PER_MAPPING as u16;
    for port in 1..=n + 1 {
        nat.outbound(secs(0), &mut udp(A, sa(REMOTE, port), b""))
            .unwrap();
    }
    let mut evicted = udp(sa(REMOTE, 1), sa(PUB, 0x6a3e), b"");
    assert_eq!(
        nat.inbound(secs(1), &mut evicted),
        Err(DropReason::Filtered)
    );
    for port in [2, n + 1] {
        let mut kept = udp(sa(REMOTE, port), sa(PUB, 0x6a3e), b"");
        assert_eq!(nat.inbound(secs(1), &mut kept), Ok(()));
    }
}

#[test]
fn hairpin_translates_both_endpoints() {
    let mut nat = nat();
    nat.outbound(secs(0), &mut udp(A, sa(REMOTE, 1), b""))
        .unwrap();
    let pa = nat.mapping_for(A).unwrap();
    let mut p = udp(B, sa(PUB, pa), b"to A via public");
    assert_eq!(nat.outbound(secs(1), &mut p), Ok(Translated::Hairpin));
    let pb = nat.mapping_for(B).unwrap();
    let s = check(&p);
    assert_eq!(
        s.src,
        sa(PUB, pb),
        "REQ-9a: external source address and port"
    );
    assert_eq!(s.dst, A);
    assert_eq!(s.payload, b"to A via public");
    assert_eq!(nat.stats().hairpin, 1);
    // Hairpin to a port nobody holds.
    let free = (1024..=u16::MAX).find(|p| *p != pa && *p != pb).unwrap();
    let mut p = udp(B, sa(PUB, free), b"");
    assert_eq!(nat.outbound(secs(1), &mut p), Err(DropReason::NoMapping));
}

#[test]
fn hairpin_hole_punch_with_port_dependent_filtering() {
    let mut c = cfg();
    c.filtering = Filtering::AddressAndPortDependent;
    let mut nat = Nat::new(c);
    nat.outbound(secs(0), &mut udp(A, sa(REMOTE, 1), b""))
        .unwrap();
    nat.outbound(secs(0), &mut udp(B, sa(REMOTE, 1), b""))
        .unwrap();
    let (pa, pb) = (nat.mapping_for(A).unwrap(), nat.mapping_for(B).unwrap());
    // A punches: dropped by B's filter, but opens A's filter for PUB:pb.
    let mut p = udp(A, sa(PUB, pb), b"");
    assert_eq!(nat.outbound(secs(1), &mut p), Err(DropReason::Filtered));
    let mut p = udp(B, sa(PUB, pa), b"");
    assert_eq!(nat.outbound(secs(1), &mut p), Ok(Translated::Hairpin));
    assert_eq!(check(&p).dst, A);
    let mut p = udp(A, sa(PUB, pb), b"");
    assert_eq!(nat.outbound(secs(1), &mut p), Ok(Translated::Hairpin));
    assert_eq!(check(&p).src, sa(PUB, pa));
}

#[test]
fn timeout_expiry_and_refresh_on_outbound() {
    let mut nat = nat();
    nat.outbound(secs(0), &mut udp(A, sa(REMOTE, 1), b""))
        .unwrap();
    assert_eq!(nat.poll_timeout(), Some(secs(120)));
    nat.outbound(secs(100), &mut udp(A, sa(REMOTE, 1), b""))
        .unwrap();
    nat.handle_timeout(secs(120));
    assert_eq!(nat.mapping_count(), 1, "refreshed at 100 s");
    assert_eq!(nat.poll_timeout(), Some(secs(220)));
    nat.handle_timeout(secs(219));
    assert_eq!(nat.mapping_count(), 1);
    drain(&mut nat);
    nat.handle_timeout(secs(220));
    assert_eq!(nat.mapping_count(), 0);
    assert_eq!(nat.poll_timeout(), None);
    let ev = drain(&mut nat);
    assert_eq!(ev.len(), 1);
    assert!(
        matches!(ev[0], NatEvent::MappingExpired { private, public, .. }
            if private == sa(Ipv4Addr::new(10, 1, 0, 100), 5000) && public == sa(PUB, 27198)),
        "{ev:?}"
    );
    let mut r = udp(sa(REMOTE, 1), sa(PUB, 0x6a3e), b"");
    assert_eq!(nat.inbound(secs(221), &mut r), Err(DropReason::NoMapping));
}

#[test]
fn inbound_does_not_refresh_and_unswept_expired_mapping_is_dead() {
    let mut nat = nat();
    nat.outbound(secs(0), &mut udp(A, sa(REMOTE, 1), b""))
        .unwrap();
    let mut r = udp(sa(REMOTE, 1), sa(PUB, 0x6a3e), b"");
    assert_eq!(nat.inbound(secs(119), &mut r), Ok(()));
    // No handle_timeout call: the mapping is still dead at 120 s.
    let mut r = udp(sa(REMOTE, 1), sa(PUB, 0x6a3e), b"");
    assert_eq!(nat.inbound(secs(120), &mut r), Err(DropReason::NoMapping));
    assert_eq!(nat.mapping_count(), 0);
}

#[test]
fn inbound_without_mapping_is_dropped_counted_and_reported_aggregated() {
    let mut nat = nat();
    let mut r = udp(sa(REMOTE, 1), sa(PUB, 40000), b"");
    assert_eq!(nat.inbound(secs(5), &mut r), Err(DropReason::NoMapping));
    let ev = drain(&mut nat);
    assert_eq!(ev.len(), 1);
    assert!(
        matches!(ev[0], NatEvent::Drop {
            reason: DropReason::NoMapping,
            direction: "inbound",
            count: 1,
            src: Some(src),
            ..
        } if src == Ipv4Addr::new(198, 51, 100, 7)),
        "{ev:?}"
    );
    for _ in 0..10 {
        let mut r = udp(sa(REMOTE, 1), sa(PUB, 40000), b"");
        assert!(nat.inbound(secs(5), &mut r).is_err());
    }
    assert!(drain(&mut nat).is_empty(), "rate limited");
    let mut r = udp(sa(REMOTE, 1), sa(PUB, 40000), b"");
    assert!(nat.inbound(secs(6), &mut r).is_err());
    let ev = drain(&mut nat);
    assert!(
        matches!(
            ev[0],
            NatEvent::Drop {
                count: 11,
                total: 12,
                ..
            }
        ),
        "{ev:?}"
    );
    assert_eq!(nat.drop_count(DropReason::NoMapping), 12);
    let total: u64 = nat.drops().map(|(_, n)| n).sum();
    assert_eq!(total, 12);
}

#[test]
fn icmp_echo_round_trip() {
    let mut nat = nat();
    let mut req = echo(*A.ip(), REMOTE, true, 0x1234, 7);
    assert_eq!(nat.outbound(secs(0), &mut req), Ok(Translated::ToOutside));
    let id = nat.public_for(Protocol::Icmp, sa(*A.ip(), 0x1234)).unwrap();
    assert!(id >= MIN_PUBLIC_PORT);
    assert_eq!(nat.mapping_for(sa(*A.ip(), 0x1234)), None, "own namespace");
    let s = check(&req);
    assert_eq!(s.src, sa(PUB, id));
    assert_eq!(s.dst.ip(), &REMOTE);
    let mut rep = echo(REMOTE, PUB, false, id, 7);
    assert_eq!(nat.inbound(secs(1), &mut rep), Ok(()));
    let s = check(&rep);
    assert_eq!(s.dst, sa(*A.ip(), 0x1234));
    assert_eq!(s.payload, b"ping payload");
    assert!(matches!(
        drain(&mut nat)[0],
        NatEvent::MappingCreated {
            protocol: Protocol::Icmp,
            ..
        }
    ));
}

#[test]
fn other_protocols_and_icmp_types_are_unsupported() {
    let mut nat = nat();
    let b = PacketBuilder::ipv4(A.ip().octets(), REMOTE.octets(), 64).tcp(5000, 80, 1, 1000);
    let mut tcp = Vec::new();
    b.write(&mut tcp, b"").unwrap();
    assert_eq!(
        nat.outbound(secs(0), &mut tcp),
        Err(DropReason::UnsupportedProtocol)
    );
    let mut rep = echo(*A.ip(), REMOTE, false, 1, 1);
    assert_eq!(
        nat.outbound(secs(0), &mut rep),
        Err(DropReason::UnsupportedProtocol)
    );
    let mut req = echo(REMOTE, PUB, true, 1, 1);
    assert_eq!(
        nat.inbound(secs(0), &mut req),
        Err(DropReason::UnsupportedProtocol)
    );
    let mut to_nat = echo(*A.ip(), PUB, true, 1, 1);
    assert_eq!(
        nat.outbound(secs(0), &mut to_nat),
        Err(DropReason::UnsupportedProtocol)
    );
    assert_eq!(nat.drop_count(DropReason::UnsupportedProtocol), 4);
    assert_eq!(nat.mapping_count(), 0);
}

#[test]
fn per_host_and_total_limits_are_counted_drops() {
    let mut c = cfg();
    c.max_mappings_per_host = 3;
    c.max_mappings = 5;
    let mut nat = Nat::new(c);
    for port in 1..=3 {
        nat.outbound(secs(0), &mut udp(sa(*A.ip(), port), sa(REMOTE, 1), b""))
            .unwrap();
    }
    let mut p = udp(sa(*A.ip(), 4), sa(REMOTE, 1), b"");
    assert_eq!(
        nat.outbound(secs(0), &mut p),
        Err(DropReason::HostMappingLimit)
    );
    for port in 1..=2 {
        nat.outbound(secs(0), &mut udp(sa(*B.ip(), port), sa(REMOTE, 1), b""))
            .unwrap();
    }
    let mut p = udp(sa(*B.ip(), 3), sa(REMOTE, 1), b"");
    assert_eq!(nat.outbound(secs(0), &mut p), Err(DropReason::TableFull));
    assert_eq!(nat.mapping_count(), 5);
    assert_eq!(nat.drop_count(DropReason::HostMappingLimit), 1);
    assert_eq!(nat.drop_count(DropReason::TableFull), 1);
    // Idle mappings are reclaimed on demand.
    let mut p = udp(sa(*B.ip(), 3), sa(REMOTE, 1), b"");
    assert_eq!(nat.outbound(secs(120), &mut p), Ok(Translated::ToOutside));
}

#[test]
fn malformed_fragment_and_foreign_packets_are_dropped() {
    let mut nat = nat();
    let good = udp(A, sa(REMOTE, 1), b"abcd");
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (good[..10].to_vec(), DropReason::Malformed),
        (good[..27].to_vec(), DropReason::Malformed), // total length > buffer
        (
            {
                let mut p = good.clone();
                p[0] = 0x65; // version 6
                p
            },
            DropReason::Malformed,
        ),
        (
            {
                let mut p = good.clone();
                p[0] = 0x44; // IHL 16 bytes
                fix_ip_checksum(&mut p[..20]);
                p
            },
            DropReason::Malformed,
        ),
        (
            {
                let mut p = good.clone();
                p[25] = 200; // UDP length beyond the packet
                p
            },
            DropReason::Malformed,
        ),
        (
            {
                let mut p = good.clone();
                p[11] ^= 1;
                p
            },
            DropReason::BadChecksum,
        ),
        (
            {
                let mut p = good.clone();
                p[6] |= 0x20; // MF
                fix_ip_checksum(&mut p);
                p
            },
            DropReason::Fragment,
        ),
        (
            {
                let mut p = good.clone();
                p[7] = 1; // offset 8
                fix_ip_checksum(&mut p);
                p
            },
            DropReason::Fragment,
        ),
        (udp(sa(OTHER, 1), sa(REMOTE, 1), b""), DropReason::NotForUs),
    ];
    for (mut p, want) in cases {
        assert_eq!(nat.outbound(secs(0), &mut p), Err(want), "{p:?}");
    }
    let mut p = udp(sa(REMOTE, 1), sa(OTHER, 1), b"");
    assert_eq!(nat.inbound(secs(0), &mut p), Err(DropReason::NotForUs));
    assert_eq!(nat.mapping_count(), 0);
    assert_eq!(nat.drops().map(|(_, n)| n).sum::<u64>(), 10);
}

#[test]
fn zero_udp_checksum_stays_zero_and_padding_is_kept() {
    let mut nat = nat();
    let mut p = udp(A, sa(REMOTE, 1), b"no checksum");
    p[26] = 0;
    p[27] = 0;
    p.extend_from_slice(&[0xaa; 4]); // link padding beyond the IPv4 total length
    nat.outbound(secs(0), &mut p).unwrap();
    assert_eq!(&p[26..28], &[0, 0]);
    assert_eq!(&p[p.len() - 4..], &[0xaa; 4]);
    let len = p.len() - 4;
    check(&p[..len]);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        let mut nat = nat();
        nat.outbound(secs(0), &mut udp(A, sa(REMOTE, 1), b"")).unwrap();
        let mut a = bytes.clone();
        let _ = nat.outbound(secs(1), &mut a);
        let mut b = bytes;
        let _ = nat.inbound(secs(1), &mut b);
        nat.handle_timeout(secs(500));
    }

    #[test]
    fn mutated_valid_packets_never_panic(
        edits in proptest::collection::vec((0usize..40, any::<u8>()), 1..4),
        fix in any::<bool>(),
        inbound in any::<bool>(),
    ) {
        let mut c = cfg();
        c.filtering = Filtering::AddressAndPortDependent;
        let mut nat = Nat::new(c);
        nat.outbound(secs(0), &mut udp(A, sa(REMOTE, 1), b"")).unwrap();
        let mut p = if inbound {
            udp(sa(REMOTE, 1), sa(PUB, 0x6a3e), b"0123456789")
        } else {
            udp(A, sa(REMOTE, 1), b"0123456789")
        };
        for (i, v) in edits {
            if let Some(b) = p.get_mut(i) { *b = v; }
        }
        if fix {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            if (20..=p.len()).contains(&ihl) { fix_ip_checksum(&mut p); }
        }
        let r = if inbound { nat.inbound(secs(1), &mut p).err() } else { nat.outbound(secs(1), &mut p).err() };
        // Whatever happened is counted.
        let drops: u64 = nat.drops().map(|(_, n)| n).sum();
        prop_assert_eq!(drops, u64::from(r.is_some()));
    }

    #[test]
    fn random_valid_udp_checksums_verify_both_ways(
        host in (any::<u8>(), any::<u8>(), any::<u8>()),
        sport in any::<u16>(),
        remote in prop::sample::select(vec![REMOTE, OTHER, Ipv4Addr::new(198, 51, 100, 200)]),
        dport in any::<u16>(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        zero_checksum in any::<bool>(),
    ) {
        let private = sa(Ipv4Addr::new(10, host.0, host.1, host.2), sport);
        let mut nat = nat();
        let mut p = udp(private, sa(remote, dport), &payload);
        if zero_checksum { p[26] = 0; p[27] = 0; }
        prop_assert_eq!(nat.outbound(secs(0), &mut p), Ok(Translated::ToOutside));
        let s = check(&p);
        let public = nat.mapping_for(private).unwrap();
        prop_assert!(public >= MIN_PUBLIC_PORT);
        prop_assert_eq!(s.src, sa(PUB, public));
        prop_assert_eq!(s.dst, sa(remote, dport));
        prop_assert_eq!(&s.payload, &payload);
        prop_assert_eq!(zero_checksum, p[26] == 0 && p[27] == 0);

        let mut r = udp(sa(remote, dport), sa(PUB, public), &payload);
        prop_assert_eq!(nat.inbound(secs(1), &mut r), Ok(()));
        let s = check(&r);
        prop_assert_eq!(s.dst, private);
        prop_assert_eq!(s.src, sa(remote, dport));
    }
}

#[test]
fn icmp_error_does_not_destroy_mapping() {
    let mut nat = nat();
    nat.outbound(secs(0), &mut udp(A, sa(REMOTE, 1), b""))
        .unwrap();
    let b = PacketBuilder::ipv4(REMOTE.octets(), PUB.octets(), 64).icmpv4(
        Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port),
    );
    let quoted = udp(sa(PUB, 0x6a3e), sa(REMOTE, 1), b"");
    let mut p = Vec::new();
    b.write(&mut p, &quoted).unwrap();
    assert_eq!(
        nat.inbound(secs(1), &mut p),
        Err(DropReason::UnsupportedProtocol)
    );
    assert_eq!(
        nat.mapping_for(A),
        Some(0x6a3e),
        "REQ-12: ICMP never ends a mapping"
    );
    let mut r = udp(sa(REMOTE, 1), sa(PUB, 0x6a3e), b"");
    assert_eq!(nat.inbound(secs(2), &mut r), Ok(()));
}
