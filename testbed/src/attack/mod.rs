//! Attacks on the scheme, run as scenario steps (`attack KIND ...`, parsed in
//! [`crate::topology::attack_step`]) and measured for `results.json` (`attacks`).
//!
//! An attack is sans-IO like a role, but at the IP layer: the engine (`engine/attack.rs`)
//! gives it the packets delivered to its host, a copy of every packet put on its host's
//! segment (an attacker that can sniff its segment) and its timeouts, and puts the IPv4
//! packets it makes on that segment, whatever their source address. A lying super node is
//! the one attack without an attacker host: the engine shows it what is delivered to the SN
//! and lets it rewrite what the SN sends. Every figure an attack reports, and the rule that
//! decides `worked`, is defined in `docs/topology.md`.
//!
//! Randomness (nonces, spoofed sources) comes from a ChaCha RNG seeded by the run seed and the
//! step's index, so a run with attacks is reproducible byte for byte.

pub mod packet;

mod dhcp_release;
mod handover_race;
mod long_term_keys;
mod lookup_flood;
mod lying_sn;
mod reflection;
mod rekey_injection;

pub use dhcp_release::{DhcpIdentity, DhcpRelease};
pub use handover_race::HandoverRace;
pub use long_term_keys::LongTermKeys;
pub use lookup_flood::LookupFlood;
pub use lying_sn::LyingSn;
pub use reflection::Reflection;
pub use rekey_injection::RekeyInjection;

use binfm_roles::Time;
use binfm_stack::wire::binfm::Message;
use binfm_stack::wire::toall::HashAddr;
use packet::{Udp, udp_packet};
use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::time::Duration;

/// The UDP port an attacker host uses for its own (unspoofed) messages.
pub const ATTACKER_PORT: u16 = 40000;
/// Queries an attacker sends to learn an EN's registered endpoint, one per second.
pub const RESOLVE_TRIES: u32 = 5;
/// Packets an attack sends now (whole IPv4 packets).
pub type Outbox = VecDeque<Vec<u8>>;

/// The running state of one attack step.
#[derive(Debug)]
pub enum Attack {
    /// `spoofed-session-request`.
    Reflection(Reflection),
    /// `handover-race`.
    HandoverRace(HandoverRace),
    /// `lying-sn`.
    LyingSn(LyingSn),
    /// `long-term-keys`.
    LongTermKeys(LongTermKeys),
    /// `lookup-flood`.
    LookupFlood(LookupFlood),
    /// `dhcp-release`.
    DhcpRelease(DhcpRelease),
    /// `rekey-injection`.
    RekeyInjection(RekeyInjection),
}

impl Attack {
    /// The step starts now.
    pub fn start(&mut self, now: Time, out: &mut Outbox) {
        match self {
            Attack::Reflection(a) => a.resolver.send(now, out),
            Attack::LookupFlood(a) => a.resolver.send(now, out),
            Attack::HandoverRace(_)
            | Attack::LyingSn(_)
            | Attack::LongTermKeys(_)
            | Attack::DhcpRelease(_)
            | Attack::RekeyInjection(_) => {}
        }
    }

    /// A packet put on the attacker's segment by someone else (sniffed).
    pub fn on_tap(&mut self, now: Time, packet: &[u8], out: &mut Outbox) {
        let Some(udp) = packet::udp_of(packet) else {
            return;
        };
        match self {
            Attack::HandoverRace(a) => a.on_tap(udp, out),
            Attack::LongTermKeys(a) => a.on_tap(now, udp),
            Attack::DhcpRelease(a) => a.on_tap(now, udp, out),
            Attack::RekeyInjection(a) => a.on_tap(now, udp, out),
            _ => {}
        }
    }

    /// Whether this attack sniffs its host's segment.
    pub fn taps(&self) -> bool {
        matches!(
            self,
            Attack::HandoverRace(_)
                | Attack::LongTermKeys(_)
                | Attack::DhcpRelease(_)
                | Attack::RekeyInjection(_)
        )
    }

    /// A packet delivered to the attacker host.
    pub fn on_receive(&mut self, now: Time, packet: &[u8], out: &mut Outbox) {
        let udp = packet::udp_of(packet);
        match self {
            Attack::Reflection(a) => {
                if let Some(u) = udp
                    && a.resolver.on_receive(u)
                {
                    a.next = Some(now);
                }
            }
            Attack::LookupFlood(a) => a.on_receive(now, packet.len(), udp),
            Attack::HandoverRace(a) => a.on_receive(packet.len(), udp),
            // A DHCP reply to the attacker is broadcast: it sees it on the segment (tap).
            Attack::LyingSn(_)
            | Attack::LongTermKeys(_)
            | Attack::DhcpRelease(_)
            | Attack::RekeyInjection(_) => {}
        }
        let _ = out;
    }

    /// The timer of [`Attack::poll_timeout`] is due.
    pub fn on_timeout(&mut self, now: Time, out: &mut Outbox) {
        match self {
            Attack::Reflection(a) => a.on_timeout(now, out),
            Attack::LookupFlood(a) => a.on_timeout(now, out),
            Attack::DhcpRelease(a) => a.on_timeout(now, out),
            Attack::RekeyInjection(a) => a.on_timeout(now, out),
            _ => {}
        }
    }

    /// When the attack wants to be woken.
    pub fn poll_timeout(&self) -> Option<Time> {
        match self {
            Attack::Reflection(a) => a.poll_timeout(),
            Attack::LookupFlood(a) => a.poll_timeout(),
            Attack::DhcpRelease(a) => a.poll_timeout(),
            Attack::RekeyInjection(a) => a.poll_timeout(),
            _ => None,
        }
    }
}

/// Learns an EN's registered NAT endpoint the way anyone can: a Query to a super node.
#[derive(Debug)]
pub struct Resolver {
    /// Whom.
    pub hash: HashAddr,
    /// The super node asked.
    pub sn: SocketAddrV4,
    /// The attacker's own endpoint.
    pub me: SocketAddrV4,
    tries: u32,
    /// When to ask again.
    pub next: Option<Time>,
    /// The registered NAT endpoint, once known.
    pub found: Option<SocketAddrV4>,
}

impl Resolver {
    /// A resolver of `hash` at `sn`, asking from `me`.
    pub fn new(hash: HashAddr, sn: SocketAddrV4, me: SocketAddrV4) -> Self {
        Resolver {
            hash,
            sn,
            me,
            tries: 0,
            next: None,
            found: None,
        }
    }

    /// Sends (again) the Query.
    pub fn send(&mut self, now: Time, out: &mut Outbox) {
        if self.found.is_some() || self.tries >= RESOLVE_TRIES {
            self.next = None;
            return;
        }
        self.tries += 1;
        let q = Message::Query {
            request_id: self.tries,
            hash_addr: self.hash,
            want_unconfirmed: true,
        };
        out.push_back(udp_packet(self.me, self.sn, &q.to_bytes()));
        self.next = Some(now + Duration::from_secs(1));
    }

    /// A datagram for the attacker: true when it is the awaited Reply.
    pub fn on_receive(&mut self, udp: Udp<'_>) -> bool {
        if self.found.is_some() || udp.src != self.sn {
            return false;
        }
        let Ok(Message::Reply {
            hash_addr,
            tx,
            unconfirmed,
            ..
        }) = Message::parse(udp.payload)
        else {
            return false;
        };
        let Some(tx) = tx.or(unconfirmed).filter(|_| hash_addr == self.hash) else {
            return false;
        };
        self.found = Some(SocketAddrV4::new(tx.out.nat_ip, tx.out.nat_port));
        self.next = None;
        true
    }
}

/// A value an attacker puts where a group-14 DH public value goes: 256 random bytes below
/// the modulus (the first byte below 0xff; the modulus starts with 64 one bits) and above 1,
/// so it passes the range check without the attacker spending a modular exponentiation.
pub fn group14_like(rng: &mut impl rand::Rng) -> Vec<u8> {
    let mut y = vec![0u8; 256];
    rng.fill_bytes(&mut y);
    y[0] &= 0x7f;
    y[255] |= 0x02;
    y
}
