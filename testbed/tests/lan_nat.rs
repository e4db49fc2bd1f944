//! Acceptance of the foundation: run `topologies/lan-nat.toml` and check from the capture and
//! the events (never from the NAT's own state) that the end host got a lease carrying its NAT's
//! public address, that its echo left the NAT from port H16(private ip, private port), that the
//! reply came back translated, and that every checksum on the wire is valid.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;
#[path = "lan_nat/discard_role.rs"]
mod discard_role;

use common::*;
use dhcproto::Decodable;
use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use etherparse::{IpNumber, Ipv4Header, UdpHeader};
use sha2::{Digest, Sha256};
use std::net::{Ipv4Addr, SocketAddrV4};

/// H16 as the paper defines it, computed here independently of the NAT's code.
fn h16(ip: Ipv4Addr, port: u16) -> u16 {
    let mut h = Sha256::new();
    h.update(ip.octets());
    h.update(port.to_be_bytes());
    let d = h.finalize();
    u16::from_be_bytes([d[0], d[1]])
}

struct Udp {
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: Vec<u8>,
}

/// Parses IPv4/UDP with etherparse and asserts both checksums.
fn udp(p: &[u8]) -> Option<Udp> {
    let (ip, rest) = Ipv4Header::from_slice(p).unwrap();
    assert_eq!(
        ip.header_checksum,
        ip.calc_header_checksum(),
        "IPv4 header checksum"
    );
    if ip.protocol != IpNumber::UDP {
        return None;
    }
    let (u, payload) = UdpHeader::from_slice(rest).unwrap();
    let payload = &payload[..(u.length as usize - 8)];
    assert_eq!(
        u.checksum,
        u.calc_checksum_ipv4(&ip, payload).unwrap(),
        "UDP checksum"
    );
    Some(Udp {
        src: SocketAddrV4::new(ip.source.into(), u.source_port),
        dst: SocketAddrV4::new(ip.destination.into(), u.destination_port),
        payload: payload.to_vec(),
    })
}

#[test]
fn lease_carries_nat_option_and_echo_leaves_the_nat_from_h16() {
    let (dir, summary) = run("lan-nat.toml", None, None);
    assert!(!summary.interrupted);
    let cap = read_capture(&dir.path().join("capture.pcapng"));
    let events = read_events(&dir.path().join("events.jsonl"));
    assert!(cap.len() > 100);

    // Every packet on the wire has valid checksums.
    let parsed: Vec<(&Captured, Option<Udp>)> = cap.iter().map(|c| (c, udp(&c.data))).collect();

    // The DHCP ACK on lan-a carries option 224 = nat-a's public address.
    let ack = parsed
        .iter()
        .filter(|(c, u)| c.segment == "lan-a" && u.as_ref().is_some_and(|u| u.src.port() == 67))
        .map(|(_, u)| {
            Message::decode(&mut dhcproto::Decoder::new(&u.as_ref().unwrap().payload)).unwrap()
        })
        .find(|m| m.opts().msg_type() == Some(MessageType::Ack))
        .expect("a DHCP ACK on lan-a");
    let nat_opt = match ack.opts().get(OptionCode::Unknown(224)) {
        Some(DhcpOption::Unknown(o)) => o.data().to_vec(),
        other => panic!("no NAT option in the ACK: {other:?}"),
    };
    assert_eq!(nat_opt, Ipv4Addr::new(198, 51, 100, 1).octets());
    let private_ip = ack.yiaddr();
    assert!(
        private_ip.octets()[..3] == [10, 1, 0],
        "leased {private_ip}"
    );

    // The echo request leaves a's LAN from the private address...
    let echo = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 10), 7);
    let req_lan = parsed
        .iter()
        .find_map(|(c, u)| u.as_ref().filter(|u| c.segment == "lan-a" && u.dst == echo))
        .expect("echo request on lan-a");
    assert_eq!(*req_lan.src.ip(), private_ip);
    // ...and appears on the public segment from nat-a's address and port H16(private).
    let want = SocketAddrV4::new(
        Ipv4Addr::new(198, 51, 100, 1),
        h16(private_ip, req_lan.src.port()),
    );
    let public_reqs = parsed
        .iter()
        .filter(|(c, u)| {
            c.segment == "public"
                && u.as_ref()
                    .is_some_and(|u| u.dst == echo && u.payload == req_lan.payload)
        })
        .count();
    assert_eq!(
        public_reqs, 1,
        "the first probe crosses the public segment once"
    );
    assert!(
        parsed.iter().any(|(c, u)| c.segment == "public"
            && u.as_ref().is_some_and(|u| u.src == want && u.dst == echo)),
        "no echo request from {want} on the public segment"
    );
    // The reply comes back translated to the private endpoint on lan-a.
    let replies_lan = parsed
        .iter()
        .filter(|(c, u)| {
            c.segment == "lan-a"
                && u.as_ref()
                    .is_some_and(|u| u.src == echo && u.dst == req_lan.src)
        })
        .count();
    assert!(
        replies_lan > 50,
        "{replies_lan} replies translated back to {}",
        req_lan.src
    );

    // Events agree: a's lease names the NAT, the echo server saw the H16 endpoint, a got replies.
    let lease = events
        .iter()
        .find(|e| e.host == "a" && e.kind == "dhcp.ack")
        .unwrap();
    assert_eq!(lease.fields["nat_public"], "198.51.100.1");
    assert!(events.iter().any(|e| e.host == "echo"
        && e.kind == "echo.request"
        && e.fields["from"] == want.to_string()));
    let replies = events
        .iter()
        .filter(|e| e.host == "a" && e.kind == "echo.reply")
        .count();
    assert_eq!(
        replies, replies_lan,
        "every reply on the wire was delivered to the app"
    );
}

#[test]
fn tshark_decodes_dhcp_with_the_nat_option_and_finds_no_bad_checksum() {
    if !have("tshark") {
        eprintln!("SKIPPED: tshark is not installed (apt-get install tshark); .ci/run installs it");
        return;
    }
    let (dir, _) = run("lan-nat.toml", None, None);
    let cap = dir.path().join("capture.pcapng");
    let tshark = |filter: &str| -> usize {
        let out = std::process::Command::new("tshark")
            .args([
                "-r",
                cap.to_str().unwrap(),
                "-o",
                "ip.check_checksum:TRUE",
                "-o",
                "udp.check_checksum:TRUE",
                "-Y",
                filter,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tshark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    // Two clients, each: offer and ack carry option 224.
    assert_eq!(tshark("dhcp.option.type == 224"), 4);
    assert_eq!(tshark("dhcp.option.dhcp == 5"), 2, "two DHCP ACKs");
    assert_eq!(
        tshark("ip.checksum.status == 2 || udp.checksum.status == 2"),
        0,
        "bad checksums"
    );
    assert!(tshark("udp.srcport == 7 && ip.dst == 10.1.0.100") > 50);
}
