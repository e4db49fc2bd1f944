//! `lookup-flood`: Session Requests naming random (unregistered) callers, from random
//! spoofed sources, at a fixed rate to an EN's registered endpoint. A callee that looks every
//! caller up at its super node fills its pending Queries, and the SN's per-source Query limit
//! (keyed on the NAT's public address) is spent for every EN behind that NAT.
//!
//! Made-up callers cost nothing to make: each request is signed with a fresh ed25519 key
//! whose hash is the caller it names, so it passes the signature check as a real unknown
//! caller's would, and only the callee's limits on lookups for callers stand in its way.
//!
//! The spoofed sources are the free documentation addresses of the attacker's segment (the
//! rule of the `flood` step), held by the attacker, so whatever is answered to them comes
//! back to it and is counted.

use super::packet::{Udp, udp_packet};
use super::{Outbox, Resolver};
use binfm_roles::Time;
use binfm_stack::wire::binfm::Message;
use binfm_stack::wire::binfm::signing_input;
use ed25519_dalek::{Signer, SigningKey};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

/// The state and counts of one `lookup-flood` step.
#[derive(Debug)]
pub struct LookupFlood {
    pub(super) resolver: Resolver,
    rate: u32,
    planned: u64,
    sources: Vec<Ipv4Addr>,
    rng: ChaCha8Rng,
    /// When the first request left (once the callee's endpoint is known).
    pub flood_start: Option<Time>,
    next: u64,
    /// Requests sent.
    pub sent: u64,
    /// Their IPv4 bytes.
    pub bytes_sent: u64,
    /// Packets that came back to the spoofed sources.
    pub replies: u64,
    /// Their IPv4 bytes.
    pub reply_bytes: u64,
}

impl LookupFlood {
    /// A flood of `rate × duration` requests to `callee` (looked up at `sn` from `me`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        me: SocketAddrV4,
        sn: SocketAddrV4,
        callee: binfm_stack::wire::toall::HashAddr,
        rate: u32,
        duration: Duration,
        sources: Vec<Ipv4Addr>,
        seed: u64,
    ) -> Self {
        LookupFlood {
            resolver: Resolver::new(callee, sn, me),
            rate,
            planned: crate::topology::attack_step::AttackSpec::flood_packets(rate, duration),
            sources,
            rng: ChaCha8Rng::seed_from_u64(seed),
            flood_start: None,
            next: 0,
            sent: 0,
            bytes_sent: 0,
            replies: 0,
            reply_bytes: 0,
        }
    }

    /// Requests the step sends in all.
    pub fn planned(&self) -> u64 {
        self.planned
    }

    /// When the flood ends (known once it started).
    pub fn flood_end(&self) -> Option<Time> {
        self.flood_start.map(|s| s + self.offset(self.planned))
    }

    fn offset(&self, k: u64) -> Duration {
        let ns = u128::from(k) * 1_000_000_000 / u128::from(self.rate.max(1));
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    pub(super) fn on_receive(&mut self, now: Time, len: usize, udp: Option<Udp<'_>>) {
        if let Some(u) = udp
            && *u.dst.ip() == *self.resolver.me.ip()
        {
            if self.resolver.on_receive(u) {
                self.flood_start = Some(now);
            }
            return;
        }
        self.replies += 1;
        self.reply_bytes += len as u64;
    }

    pub(super) fn on_timeout(&mut self, now: Time, out: &mut Outbox) {
        if self.resolver.next.is_some_and(|t| t <= now) {
            self.resolver.send(now, out);
        }
        let (Some(start), Some(to)) = (self.flood_start, self.resolver.found) else {
            return;
        };
        while self.next < self.planned && start + self.offset(self.next) <= now {
            let src_ip = self
                .sources
                .get(self.rng.random_range(0..self.sources.len().max(1)))
                .copied()
                .unwrap_or(*self.resolver.me.ip());
            let src = SocketAddrV4::new(src_ip, self.rng.random_range(1024..=u16::MAX));
            let key = SigningKey::from_bytes(&self.rng.random());
            let public_key = key.verifying_key().to_bytes();
            let mut msg = Message::SessionRequest {
                caller: binfm_roles::wallet::hash_addr_of(&public_key),
                callee: self.resolver.hash,
                nonce: self.rng.random(),
                ssrc: self.rng.random(),
                ephemeral: super::group14_like(&mut self.rng),
                next: super::group14_like(&mut self.rng),
                public_key,
                signature: [0; 64],
            };
            let sig = key.sign(&signing_input(&msg)).to_bytes();
            if let Message::SessionRequest { signature, .. } = &mut msg {
                *signature = sig;
            }
            let p = udp_packet(src, to, &msg.to_bytes());
            self.sent += 1;
            self.bytes_sent += p.len() as u64;
            out.push_back(p);
            self.next += 1;
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Time> {
        let flood = match self.flood_start {
            Some(s) if self.next < self.planned => Some(s + self.offset(self.next)),
            _ => None,
        };
        match (self.resolver.next, flood) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
