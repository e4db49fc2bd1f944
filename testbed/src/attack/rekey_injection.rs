//! `rekey-injection`: an attacker that sniffs its segment injects Key Renewals into the calls
//! it sees, from its own address, to the endpoint the genuine messages go to:
//!
//! - **forged**: for every call it sees set up (a Session Request, or a Session Response), a
//!   Key Renewal naming that message's sender, with a fresh high counter, the attacker's own
//!   (in-range) DH value and a random MAC, [`FORGE_AFTER`] later (the call is up by then);
//! - **tampered**: every genuine Key Renewal it sees, at once, with the DH value replaced by
//!   its own and the rest (sender, counter, MAC) kept: an attacker closer to the peer than the
//!   initiator gets it there first, the key substitution of the paper's unauthenticated
//!   renewal;
//! - **replayed**: every genuine Key Renewal it sees, byte for byte, [`REPLAY_AFTER`] later.
//!
//! The attacker has no session key, so none of these can carry a valid MAC of its own.

use super::packet::{Udp, udp_packet};
use super::{ATTACKER_PORT, Outbox};
use binfm_roles::Time;
use binfm_stack::wire::binfm::Message;
use binfm_stack::wire::toall::HashAddr;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

/// A forged renewal goes this long after the call's setup message was seen.
pub const FORGE_AFTER: Duration = Duration::from_secs(2);
/// A genuine renewal is replayed this long after it was seen.
pub const REPLAY_AFTER: Duration = Duration::from_secs(1);
/// Counter of the first forged renewal (above any counter of a real call's control messages).
pub const FORGED_COUNTER: u64 = 1_000_000;

/// The state and counts of one `rekey-injection` step.
#[derive(Debug)]
pub struct RekeyInjection {
    me: Ipv4Addr,
    rng: ChaCha8Rng,
    /// (sender, destination) of the calls seen set up.
    calls: BTreeSet<(HashAddr, SocketAddrV4)>,
    /// (sender, counter) of the genuine renewals seen.
    renewals: BTreeSet<(HashAddr, u64)>,
    /// Injections due: (when, destination, datagram).
    due: Vec<(Time, SocketAddrV4, Vec<u8>)>,
    /// Senders named by the injected renewals.
    pub senders: BTreeSet<HashAddr>,
    /// Forged renewals sent.
    pub forged: u64,
    /// Tampered copies sent.
    pub tampered: u64,
    /// Replays sent.
    pub replayed: u64,
    /// When the first injection went out.
    pub first_injection: Option<Time>,
}

impl RekeyInjection {
    /// An attacker at `me`.
    pub fn new(me: Ipv4Addr, seed: u64) -> Self {
        RekeyInjection {
            me,
            rng: ChaCha8Rng::seed_from_u64(seed),
            calls: BTreeSet::new(),
            renewals: BTreeSet::new(),
            due: Vec::new(),
            senders: BTreeSet::new(),
            forged: 0,
            tampered: 0,
            replayed: 0,
            first_injection: None,
        }
    }

    /// Renewals injected, of every kind.
    pub fn injected(&self) -> u64 {
        self.forged + self.tampered + self.replayed
    }

    fn send(&mut self, now: Time, to: SocketAddrV4, payload: &[u8], out: &mut Outbox) {
        self.first_injection.get_or_insert(now);
        out.push_back(udp_packet(
            SocketAddrV4::new(self.me, ATTACKER_PORT),
            to,
            payload,
        ));
    }

    pub(super) fn on_tap(&mut self, now: Time, udp: Udp<'_>, out: &mut Outbox) {
        if *udp.src.ip() == self.me {
            return;
        }
        let Ok(msg) = Message::parse(udp.payload) else {
            return;
        };
        let sender = match msg {
            Message::SessionRequest { caller, .. } => caller,
            Message::SessionResponse { callee, .. } => callee,
            Message::KeyRenewal {
                sender,
                counter,
                mac,
                ..
            } => {
                if !self.renewals.insert((sender, counter)) {
                    return; // a retransmission, or the same renewal seen on another hop
                }
                self.senders.insert(sender);
                let tampered = Message::KeyRenewal {
                    sender,
                    counter,
                    y: super::group14_like(&mut self.rng),
                    mac,
                };
                self.tampered += 1;
                self.send(now, udp.dst, &tampered.to_bytes(), out);
                self.due
                    .push((now + REPLAY_AFTER, udp.dst, udp.payload.to_vec()));
                return;
            }
            _ => return,
        };
        if !self.calls.insert((sender, udp.dst)) {
            return;
        }
        let mut mac = [0u8; 16];
        self.rng.fill_bytes(&mut mac);
        let forged = Message::KeyRenewal {
            sender,
            counter: FORGED_COUNTER + self.calls.len() as u64,
            y: super::group14_like(&mut self.rng),
            mac,
        };
        self.due
            .push((now + FORGE_AFTER, udp.dst, forged.to_bytes()));
    }

    pub(super) fn on_timeout(&mut self, now: Time, out: &mut Outbox) {
        let (ready, later): (Vec<_>, Vec<_>) = self.due.drain(..).partition(|d| d.0 <= now);
        self.due = later;
        for (_, to, payload) in ready {
            match Message::parse(&payload) {
                Ok(Message::KeyRenewal {
                    sender, counter, ..
                }) => {
                    self.senders.insert(sender);
                    if counter > FORGED_COUNTER {
                        self.forged += 1;
                    } else {
                        self.replayed += 1;
                    }
                }
                _ => continue,
            }
            self.send(now, to, &payload, out);
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Time> {
        self.due.iter().map(|d| d.0).min()
    }
}
