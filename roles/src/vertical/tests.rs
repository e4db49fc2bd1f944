//! In-memory harness: end nodes A and B, one STUN server and one location server per domain,
//! one-way delays per path (T_I = EN to its own servers, T_II = EN to EN, T_III = the whole
//! resolution between location servers, so each direction of that path is T_III / 2), and
//! virtual time. Latencies are measured from the roles' events, never computed.

use super::en::{VState, VerticalNode};
use super::location::LocationServer;
use super::stun::StunServer;
use crate::event::Event;
use crate::util::millis;
use crate::{Time, Transmit};
use binfm_stack::wire::ports;
use binfm_stack::wire::vertical::{Id, VmMessage, mac_input};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

const T_I: Duration = Duration::from_millis(40);
const T_II: Duration = Duration::from_millis(200);
const T_III: Duration = Duration::from_millis(400);

const ID_A: Id = [0xaa; 32];
const ID_B: Id = [0xbb; 32];

const IP_A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const IP_A2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
const IP_B: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 20);
const IP_STUN_A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const IP_LS_A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const IP_STUN_B: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const IP_LS_B: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);

fn sa(ip: Ipv4Addr, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip, port)
}

#[derive(Debug)]
enum Node {
    En(Box<VerticalNode>),
    Stun(StunServer),
    Ls(LocationServer),
}

impl Node {
    fn handle_datagram(&mut self, now: Time, from: SocketAddrV4, to: SocketAddrV4, data: &[u8]) {
        match self {
            Node::En(n) => n.handle_datagram(now, from, to, data),
            Node::Stun(n) => n.handle_datagram(now, from, to, data),
            Node::Ls(n) => n.handle_datagram(now, from, to, data),
        }
    }
    fn handle_timeout(&mut self, now: Time) {
        match self {
            Node::En(n) => n.handle_timeout(now),
            Node::Stun(n) => n.handle_timeout(now),
            Node::Ls(n) => n.handle_timeout(now),
        }
    }
    fn poll_timeout(&self) -> Option<Time> {
        match self {
            Node::En(n) => n.poll_timeout(),
            Node::Stun(n) => n.poll_timeout(),
            Node::Ls(n) => n.poll_timeout(),
        }
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        match self {
            Node::En(n) => n.poll_transmit(),
            Node::Stun(n) => n.poll_transmit(),
            Node::Ls(n) => n.poll_transmit(),
        }
    }
    fn poll_event(&mut self) -> Option<Event> {
        match self {
            Node::En(n) => n.poll_event(),
            Node::Stun(n) => n.poll_event().map(Into::into),
            Node::Ls(n) => n.poll_event().map(Into::into),
        }
    }
}

#[derive(Debug, Clone)]
struct Packet {
    at: Time,
    seq: u64,
    from: SocketAddrV4,
    to: SocketAddrV4,
    payload: Vec<u8>,
}

/// Decides whether a packet is dropped (loss tests).
type Dropper = Box<dyn FnMut(&Packet) -> bool>;

struct Net {
    now: Time,
    names: Vec<&'static str>,
    nodes: Vec<Node>,
    ip_of: Vec<Ipv4Addr>,
    queue: Vec<Packet>,
    seq: u64,
    log: Vec<(Time, &'static str, Event)>,
    /// Every datagram sent (a corpus for the robustness tests).
    wire: Vec<Packet>,
    /// Destinations nobody holds (the old address after a move).
    unroutable: Vec<SocketAddrV4>,
    dropper: Option<Dropper>,
}

fn domain(name: &str) -> Option<u8> {
    match name {
        "A" | "stunA" | "lsA" => Some(1),
        "B" | "stunB" | "lsB" => Some(2),
        _ => None,
    }
}

/// One-way delay between two nodes, by the paper's units.
fn delay(from: &str, to: &str) -> Option<Duration> {
    let ens = |n: &str| n == "A" || n == "B";
    let ls = |n: &str| n.starts_with("ls");
    if ens(from) && ens(to) {
        return Some(T_II);
    }
    if ls(from) && ls(to) {
        return Some(T_III / 2);
    }
    if (ens(from) || ens(to)) && domain(from) == domain(to) {
        return Some(T_I);
    }
    None
}

impl Net {
    fn new() -> Self {
        let ls_a = LocationServer::new(
            "one",
            ports::LOCATION,
            vec![("two".into(), sa(IP_LS_B, ports::LOCATION))],
        );
        let ls_b = LocationServer::new(
            "two",
            ports::LOCATION,
            vec![("one".into(), sa(IP_LS_A, ports::LOCATION))],
        );
        let a = VerticalNode::new(ID_A, ports::EN, sa(IP_LS_A, ports::LOCATION), 1, 440.0);
        let b = VerticalNode::new(ID_B, ports::EN, sa(IP_LS_B, ports::LOCATION), 2, 660.0);
        let mut net = Net {
            now: Time::ZERO,
            names: vec!["A", "B", "stunA", "stunB", "lsA", "lsB"],
            nodes: vec![
                Node::En(Box::new(a)),
                Node::En(Box::new(b)),
                Node::Stun(StunServer::new(ports::STUN)),
                Node::Stun(StunServer::new(ports::STUN)),
                Node::Ls(ls_a),
                Node::Ls(ls_b),
            ],
            ip_of: vec![IP_A, IP_B, IP_STUN_A, IP_STUN_B, IP_LS_A, IP_LS_B],
            queue: Vec::new(),
            seq: 0,
            log: Vec::new(),
            wire: Vec::new(),
            unroutable: Vec::new(),
            dropper: None,
        };
        net.en(0)
            .on_address(Time::ZERO, IP_A, sa(IP_STUN_A, ports::STUN));
        net.en(1)
            .on_address(Time::ZERO, IP_B, sa(IP_STUN_B, ports::STUN));
        net.drain();
        net
    }

    fn en(&mut self, i: usize) -> &mut VerticalNode {
        match &mut self.nodes[i] {
            Node::En(n) => n,
            _ => unreachable!("node {i} is not an end node"),
        }
    }

    fn drain(&mut self) {
        for i in 0..self.nodes.len() {
            while let Some(e) = self.nodes[i].poll_event() {
                self.log.push((self.now, self.names[i], e));
            }
            while let Some(t) = self.nodes[i].poll_transmit() {
                let from = sa(t.src_ip.unwrap_or(self.ip_of[i]), t.src_port);
                self.seq += 1;
                let p = Packet {
                    at: self.now,
                    seq: self.seq,
                    from,
                    to: t.dst,
                    payload: t.payload,
                };
                self.wire.push(p.clone());
                let Some(j) = self.ip_of.iter().position(|ip| ip == p.to.ip()) else {
                    self.unroutable.push(p.to);
                    continue;
                };
                // No path between these two (e.g. a server answering a datagram that claimed
                // another server's address): lost, as off the test's network.
                let Some(d) = delay(self.names[i], self.names[j]) else {
                    self.unroutable.push(p.to);
                    continue;
                };
                if self.dropper.as_mut().is_some_and(|f| f(&p)) {
                    continue;
                }
                self.queue.push(Packet {
                    at: self.now + d,
                    ..p
                });
            }
        }
    }

    fn run_until(&mut self, end: Time) {
        loop {
            self.drain();
            let pkt = self.queue.iter().map(|p| (p.at, p.seq)).min();
            let timer = self.nodes.iter().filter_map(Node::poll_timeout).min();
            let next = match (pkt, timer) {
                (Some((p, _)), Some(t)) => p.min(t),
                (Some((p, _)), None) => p,
                (None, Some(t)) => t,
                (None, None) => break,
            };
            if next > end {
                break;
            }
            self.now = next;
            if let Some((at, seq)) = pkt
                && at == next
            {
                let k = self
                    .queue
                    .iter()
                    .position(|p| p.seq == seq)
                    .expect("queued");
                let p = self.queue.swap_remove(k);
                // Delivered to whoever holds the address now (nobody after a move).
                if let Some(j) = self.ip_of.iter().position(|ip| ip == p.to.ip()) {
                    self.nodes[j].handle_datagram(self.now, p.from, p.to, &p.payload);
                }
                continue;
            }
            for n in &mut self.nodes {
                if n.poll_timeout().is_some_and(|t| t <= next) {
                    n.handle_timeout(next);
                }
            }
        }
        self.now = end;
        self.drain();
    }

    /// Runs a command on an end node at the current time.
    fn at(&mut self, i: usize, f: impl FnOnce(&mut VerticalNode, Time)) {
        let now = self.now;
        f(self.en(i), now);
        self.drain();
    }

    /// A moves to a new address: the old one stops reaching it.
    fn move_a(&mut self) {
        self.ip_of[0] = IP_A2;
        self.at(0, |a, now| {
            a.on_address_lost();
            a.on_address(now, IP_A2, sa(IP_STUN_A, ports::STUN));
        });
    }

    /// First time `host` logged `kind` at or after `since`.
    fn first(&self, host: &str, kind: &str, since: Time) -> Option<Time> {
        self.log
            .iter()
            .find(|(t, h, e)| *t >= since && *h == host && e.kind() == kind)
            .map(|(t, _, _)| *t)
    }

    fn count(&self, host: &str, kind: &str) -> usize {
        self.log
            .iter()
            .filter(|(_, h, e)| *h == host && e.kind() == kind)
            .count()
    }
}

/// A net where both ENs registered, then A called B at 5 s and the call is active.
fn established() -> (Net, Time) {
    let mut net = Net::new();
    net.run_until(Time::from_secs(5));
    let t0 = net.now;
    net.at(0, |a, now| a.call(now, ID_B));
    net.run_until(t0 + Duration::from_secs(3));
    (net, t0)
}

#[test]
fn both_register_their_stun_mapped_contact() {
    let mut net = Net::new();
    net.run_until(Time::from_secs(2));
    assert_eq!(net.en(0).registered(), Some(sa(IP_A, ports::EN)));
    assert_eq!(net.en(1).registered(), Some(sa(IP_B, ports::EN)));
    // STUN round trip then Register round trip: 4 T_I.
    assert_eq!(
        net.first("A", "vertical.stun_mapped", Time::ZERO),
        Some(2 * T_I)
    );
    assert_eq!(
        net.first("A", "vertical.registered", Time::ZERO),
        Some(4 * T_I)
    );
    match &net.nodes[5] {
        Node::Ls(ls) => assert_eq!(ls.binding(&ID_B), Some(sa(IP_B, ports::EN))),
        _ => unreachable!(),
    }
    assert!(net.unroutable.is_empty());
}

#[test]
fn pre_call_is_1440_ms_measured() {
    let (net, t0) = established();
    let since = |host, kind| net.first(host, kind, t0).map(|t| millis(t - t0));
    assert_eq!(since("A", "vertical.call_started"), Some(0));
    // Steps one by one, as docs/design.md ("Vertical model") lists them.
    assert_eq!(since("A", "vertical.stun_mapped"), Some(80), "(1)(2) 2 T_I");
    assert_eq!(since("A", "vertical.lookup_sent"), Some(80));
    assert_eq!(
        since("lsA", "location.resolved"),
        Some(520),
        "(3) T_I + (4) T_III"
    );
    assert_eq!(since("A", "vertical.resolved"), Some(560), "(5) T_I");
    assert_eq!(since("B", "vertical.incoming"), Some(760), "(8) T_II");
    assert_eq!(
        since("B", "vertical.stun_mapped"),
        Some(840),
        "(6)(7) 2 T_I"
    );
    assert_eq!(since("A", "vertical.invite_ok"), Some(1040), "(9) T_II");
    assert_eq!(since("B", "vertical.active"), Some(1240), "(10) T_II");
    // Table 1: 6 T_I + 4 T_II + T_III.
    assert_eq!(since("A", "vertical.active"), Some(1440), "(11) T_II");
    // B sends audio with its reply: A decrypts B's first frame at the same moment.
    assert_eq!(since("A", "vertical.first_frame"), Some(1440));
    // A's own first frame needs one more T_II to reach B.
    assert_eq!(since("B", "vertical.first_frame"), Some(1640));
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let (Node::En(a), Node::En(b)) = (a, b) else {
        unreachable!()
    };
    assert_eq!(a.calls()[0].state, VState::Active);
    assert_eq!(b.calls()[0].state, VState::Active);
    // One key per direction.
    assert!(a.calls()[0].media.send_key_id().is_some());
    assert_ne!(
        a.calls()[0].media.send_key_id(),
        b.calls()[0].media.send_key_id()
    );
    // Audio both ways, nothing refused; 3 s after the start A sent (3000-1440)/20 + 1 frames.
    assert_eq!(a.calls()[0].media.frames_sent, 79);
    assert!(b.calls()[0].media.rx_stats.summary().received >= 69);
    assert!(a.calls()[0].media.rx_stats.summary().received >= 78);
    assert!(
        a.calls()[0].media.media_refused.is_empty() && b.calls()[0].media.media_refused.is_empty()
    );
    assert!(net.unroutable.is_empty());
}

#[test]
fn mid_call_move_is_280_ms_measured_and_audio_follows() {
    let (mut net, _) = established();
    let t1 = net.now;
    net.move_a();
    net.run_until(t1 + Duration::from_secs(2));
    let moved = net.first("A", "vertical.address", t1).expect("address");
    let accepted = net
        .first("B", "vertical.reinvite_accepted", t1)
        .expect("accepted");
    assert_eq!(millis(accepted - moved), 280, "Table 2: 2 T_I + T_II");
    assert_eq!(
        net.first("A", "vertical.reinvite_sent", t1),
        Some(t1 + 2 * T_I)
    );
    // A re-registered its new contact too.
    assert_eq!(net.en(0).registered(), Some(sa(IP_A2, ports::EN)));
    // B's audio reaches A again: the gap is 280 ms + T_II in flight.
    let resumed = net
        .first("A", "vertical.media_resumed", t1)
        .expect("resumed");
    assert_eq!(millis(resumed - moved), 480);
    // A's own frames kept flowing from the new address.
    let Node::En(b) = &net.nodes[1] else {
        unreachable!()
    };
    assert_eq!(b.calls()[0].peer_addr, Some(sa(IP_A2, ports::EN)));
    // Only B's frames to A's old address, sent after the move and before B switched: B's
    // frames fall at t1 + 20k ms, so those at t1 + 20..260 ms (13); the one at t1 left before
    // the move and was lost in flight, the one at t1 + 280 ms goes to the new address.
    assert!(net.unroutable.iter().all(|d| *d == sa(IP_A, ports::EN)));
    assert_eq!(net.unroutable.len(), 13);
}

#[test]
fn rekey_is_400_ms_measured_either_side() {
    let (mut net, _) = established();
    for (who, peer, epoch) in [(0usize, "B", 1u32), (1, "A", 2)] {
        let me = ["A", "B"][who];
        let t2 = net.now;
        net.at(who, |n, now| n.rekey(now));
        net.run_until(t2 + Duration::from_secs(2));
        let sent = net.first(me, "vertical.rekey_sent", t2).expect("sent");
        let accepted = net
            .first(peer, "vertical.rekey_accepted", t2)
            .expect("accepted");
        let done = net.first(me, "vertical.rekey_done", t2).expect("done");
        assert_eq!(
            millis(accepted - sent),
            200,
            "the peer holds the key after T_II"
        );
        assert_eq!(
            millis(done - sent),
            400,
            "Table 3: both hold it after 2 T_II"
        );
        // The peer switches its sending key when it sees the initiator's new-key media.
        let switched = net
            .first(peer, "vertical.rekey_switched", t2)
            .expect("switched");
        assert_eq!(millis(switched - sent), 600);
        let (Node::En(a), Node::En(b)) = (&net.nodes[0], &net.nodes[1]) else {
            unreachable!()
        };
        let (ca, cb) = (&a.calls()[0], &b.calls()[0]);
        assert_eq!((ca.epoch(), cb.epoch()), (epoch, epoch));
        assert!(
            ca.media.media_refused.is_empty(),
            "{:?}",
            ca.media.media_refused
        );
        assert!(
            cb.media.media_refused.is_empty(),
            "{:?}",
            cb.media.media_refused
        );
        // No frame lost across the switch (all in flight have arrived 2 s later, but the last
        // T_II of frames may still be on the way).
        for c in [ca, cb] {
            let s = c.media.rx_stats.summary();
            assert_eq!(s.lost, 0);
        }
    }
}

#[test]
fn unknown_peer_is_not_found() {
    let mut net = Net::new();
    net.run_until(Time::from_secs(1));
    let t0 = net.now;
    net.at(0, |a, now| a.call(now, [0x99; 32]));
    net.run_until(t0 + Duration::from_secs(3));
    let nf = net
        .first("A", "vertical.lookup_not_found", t0)
        .expect("not found");
    assert_eq!(
        millis(nf - t0),
        560,
        "STUN 2 T_I + lookup T_I + resolution T_III + reply T_I"
    );
    assert!(net.first("A", "vertical.call_failed", t0).is_some());
    assert_eq!(net.en(0).calls()[0].state, VState::Ended);
    assert_eq!(net.count("B", "vertical.incoming"), 0);
}

#[test]
fn lost_messages_are_retransmitted() {
    // Drop the first of every kind of request on the way: STUN, Lookup, Resolve, Invite,
    // KeyExchange. The call still comes up.
    let mut net = Net::new();
    net.run_until(Time::from_secs(5));
    let mut seen: BTreeMap<u8, u32> = BTreeMap::new();
    net.dropper = Some(Box::new(move |p: &Packet| {
        let kind = if binfm_stack::wire::stun::is_stun(&p.payload) {
            0
        } else if VmMessage::looks_like(&p.payload) {
            p.payload[3]
        } else {
            return false;
        };
        if ![0u8, 3, 5, 7, 9].contains(&kind) {
            return false;
        }
        let n = seen.entry(kind).or_default();
        *n += 1;
        *n == 1
    }));
    let t0 = net.now;
    net.at(0, |a, now| a.call(now, ID_B));
    net.run_until(t0 + Duration::from_secs(20));
    assert!(net.first("A", "vertical.active", t0).is_some());
    assert!(net.first("B", "vertical.first_frame", t0).is_some());
    let (Node::En(a), Node::En(b)) = (&net.nodes[0], &net.nodes[1]) else {
        unreachable!()
    };
    assert_eq!(a.calls().len(), 1);
    assert_eq!(
        b.calls().len(),
        1,
        "a retransmitted Invite is not a second call"
    );
    // A second call to the same peer while one is up is refused.
    net.at(0, |a, now| a.call(now, ID_B));
    assert_eq!(net.en(0).calls().len(), 1);
    assert_eq!(net.count("A", "vertical.call_failed"), 1);
}

#[test]
fn forged_reinvite_and_rekey_are_refused() {
    let (mut net, _) = established();
    let evil = sa(Ipv4Addr::new(192, 0, 2, 66), 4444);
    let forged_re = VmMessage::ReInvite {
        from: ID_A,
        counter: 100,
        contact: evil,
        mac: [0; 16],
    };
    let forged_key = VmMessage::KeyExchange {
        from: ID_A,
        epoch: 1,
        nonce: [1; 16],
        y: vec![2; 256],
        mac: [0; 16],
    };
    let now = net.now;
    let b = net.en(1);
    b.handle_datagram(now, evil, sa(IP_B, ports::EN), &forged_re.to_bytes());
    b.handle_datagram(now, evil, sa(IP_B, ports::EN), &forged_key.to_bytes());
    // A ReInvite for someone B has no call with.
    let stranger = VmMessage::ReInvite {
        from: [0x77; 32],
        counter: 1,
        contact: evil,
        mac: [0; 16],
    };
    b.handle_datagram(now, evil, sa(IP_B, ports::EN), &stranger.to_bytes());
    assert_eq!(b.calls()[0].peer_addr, Some(sa(IP_A, ports::EN)));
    assert_eq!(b.calls()[0].epoch(), 0);
    assert_eq!(b.calls()[0].control_refused, 2);
    net.drain();
    assert_eq!(net.count("B", "vertical.reinvite_rejected"), 2);
    assert_eq!(net.count("B", "vertical.key_rejected"), 1);
    // A genuine re-invite replayed later is refused too.
    let t1 = net.now;
    net.move_a();
    net.run_until(t1 + Duration::from_secs(1));
    let genuine = net
        .wire
        .iter()
        .rev()
        .find(|p| {
            VmMessage::parse(&p.payload).is_ok_and(|m| matches!(m, VmMessage::ReInvite { .. }))
        })
        .expect("a re-invite")
        .payload
        .clone();
    assert!(mac_input(&VmMessage::parse(&genuine).expect("parses")).len() == genuine.len());
    let now = net.now;
    let b = net.en(1);
    b.handle_datagram(now, evil, sa(IP_B, ports::EN), &genuine);
    assert_eq!(b.calls()[0].peer_addr, Some(sa(IP_A2, ports::EN)));
    net.drain();
    assert_eq!(net.count("B", "vertical.reinvite_rejected"), 3);
}

#[test]
fn invite_for_someone_else_is_refused() {
    let mut net = Net::new();
    net.run_until(Time::from_secs(1));
    let inv = VmMessage::Invite {
        caller: ID_A,
        callee: [0x55; 32],
        contact: sa(IP_A, ports::EN),
        ssrc: 1,
    };
    let now = net.now;
    net.en(1).handle_datagram(
        now,
        sa(IP_A, ports::EN),
        sa(IP_B, ports::EN),
        &inv.to_bytes(),
    );
    net.drain();
    assert_eq!(net.count("B", "vertical.invite_refused"), 1);
    assert!(net.en(1).calls().is_empty());
}

#[test]
fn an_invalid_y_is_refused() {
    // A KeyExchange whose Y is outside 1 < Y < p-1, from the real caller, at setup.
    let mut net = Net::new();
    net.run_until(Time::from_secs(1));
    let t0 = net.now;
    net.at(0, |a, now| a.call(now, ID_B));
    // Stop just after B answered with InviteOk (B is waiting for the key exchange).
    net.run_until(t0 + Duration::from_millis(900));
    let now = net.now;
    let bad = VmMessage::KeyExchange {
        from: ID_A,
        epoch: 0,
        nonce: [3; 16],
        y: vec![0; 256],
        mac: [0; 16],
    };
    let b = net.en(1);
    b.handle_datagram(
        now,
        sa(IP_A, ports::EN),
        sa(IP_B, ports::EN),
        &bad.to_bytes(),
    );
    assert_eq!(b.calls()[0].state, VState::AwaitKey);
    net.drain();
    assert_eq!(net.count("B", "vertical.key_rejected"), 1);
    // The genuine exchange still completes.
    net.run_until(t0 + Duration::from_secs(3));
    assert_eq!(
        millis(net.first("A", "vertical.active", t0).expect("active") - t0),
        1440
    );
}

/// Datagrams for robustness: real ones from a call (mutated) and arbitrary bytes.
fn corpus() -> Vec<Vec<u8>> {
    let (mut net, _) = established();
    net.move_a();
    let t = net.now;
    net.run_until(t + Duration::from_millis(500));
    net.at(0, |a, now| a.rekey(now));
    let t = net.now;
    net.run_until(t + Duration::from_secs(1));
    let mut kinds = BTreeMap::new();
    for p in &net.wire {
        let k = p.payload.first().copied().unwrap_or(0) as u16 * 256
            + p.payload.get(3).copied().unwrap_or(0) as u16;
        kinds.entry(k).or_insert_with(|| p.payload.clone());
    }
    kinds.into_values().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn end_node_never_panics(
        inputs in proptest::collection::vec(
            (any::<usize>(), any::<usize>(), any::<u8>(), any::<usize>(), proptest::collection::vec(any::<u8>(), 0..400), any::<u8>()),
            1..8,
        )
    ) {
        thread_local! {
            static CORPUS: Vec<Vec<u8>> = corpus();
        }
        let (mut net, _) = established();
        let now = net.now;
        let corpus = CORPUS.with(Clone::clone);
        for (pick, idx, val, cut, random, mode) in inputs {
            let data = match mode % 3 {
                0 => random,
                1 => {
                    let mut d = corpus[pick % corpus.len()].clone();
                    let i = idx % d.len().max(1);
                    if let Some(b) = d.get_mut(i) { *b = val; }
                    d.truncate(cut % (d.len() + 1));
                    d
                }
                _ => {
                    let mut d = b"VM\x01".to_vec();
                    d.push(val % 13);
                    d.extend_from_slice(&random);
                    d
                }
            };
            for who in 0..2 {
                net.en(who).handle_datagram(now, sa(IP_B, ports::EN), sa(IP_A, ports::EN), &data);
            }
            for srv in 2..6 {
                net.nodes[srv].handle_datagram(now, sa(IP_LS_B, ports::LOCATION), sa(IP_LS_A, ports::LOCATION), &data);
            }
        }
        net.run_until(now + Duration::from_secs(1));
        // The established call survives garbage.
        let Node::En(a) = &net.nodes[0] else { unreachable!() };
        prop_assert_eq!(a.calls()[0].state, VState::Active);
    }

    #[test]
    fn fresh_end_node_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut n = VerticalNode::new(ID_A, ports::EN, sa(IP_LS_A, ports::LOCATION), 9, 440.0);
        n.handle_datagram(Time::ZERO, sa(IP_B, 1), sa(IP_A, ports::EN), &data);
        n.on_address(Time::ZERO, IP_A, sa(IP_STUN_A, ports::STUN));
        n.handle_datagram(Time::ZERO, sa(IP_B, 1), sa(IP_A, ports::EN), &data);
        n.handle_timeout(Time::from_secs(100));
        while n.poll_transmit().is_some() {}
    }
}
