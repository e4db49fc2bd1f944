//! The vertical EN's STUN client (RFC 8489 Binding; Figure 1 steps 1-2 and 6-7, Figure 11
//! steps 1-2): one transaction at a time, shared by everything waiting for the public
//! contact (registering, calling, answering, moving).

use super::VerticalNode;
use super::call::VState;
use super::events::VerticalEvent;
use crate::Time;
use crate::session::retransmit::Backoff;
use crate::util::{millis_f64, short_hex};
use binfm_stack::wire::stun::{Class, StunMessage};
use binfm_stack::wire::vertical::Id;
use rand::RngExt;
use std::net::SocketAddrV4;
use std::time::Duration;

/// STUN retransmission: first RTO (RFC 8489 section 6.2.1 recommends 500 ms).
pub const STUN_RTO: Duration = Duration::from_millis(500);
/// STUN requests sent at most per transaction (RFC 8489's Rc = 7).
pub const STUN_TRIES: u32 = 7;

/// What to do once the STUN answer is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterStun {
    Register,
    Call(Id),
    Answer(Id),
    Move,
}

/// The STUN Binding transaction in flight (one at a time, shared by every purpose).
#[derive(Debug, Clone)]
pub(super) struct StunTx {
    pub(super) tid: [u8; 12],
    pub(super) first_sent: Time,
    pub(super) backoff: Backoff,
}

impl VerticalNode {
    pub(super) fn want_stun(&mut self, now: Time, then: AfterStun) {
        if !self.after_stun.contains(&then) {
            self.after_stun.push(then);
        }
        if self.stun.is_none() {
            let tid: [u8; 12] = self.rng.random();
            self.stun = Some(StunTx {
                tid,
                first_sent: now,
                backoff: Backoff::new(STUN_RTO, Duration::MAX, now),
            });
            self.send_stun(now);
        }
    }

    pub(super) fn send_stun(&mut self, now: Time) {
        let (Some(server), Some(_)) = (self.stun_server, self.local) else {
            return;
        };
        let Some(tx) = &mut self.stun else { return };
        tx.backoff.on_send(now);
        let (tid, tries) = (tx.tid, tx.backoff.tries());
        let purposes: Vec<&str> = self
            .after_stun
            .iter()
            .map(|a| match a {
                AfterStun::Register => "register",
                AfterStun::Call(_) => "call",
                AfterStun::Answer(_) => "answer",
                AfterStun::Move => "move",
            })
            .collect();
        self.ev(VerticalEvent::StunSent {
            r#try: tries,
            r#for: purposes.join(","),
            server,
        });
        self.send(server, StunMessage::binding_request(tid).to_bytes());
    }

    pub(super) fn on_stun(&mut self, now: Time, from: SocketAddrV4, msg: StunMessage) {
        let Some(tx) = &self.stun else { return };
        if msg.transaction_id != tx.tid || msg.class != Class::SuccessResponse {
            return;
        }
        let Some(mapped) = msg.mapped else {
            self.ev(VerticalEvent::StunFailed {
                reason: "no XOR-MAPPED-ADDRESS",
            });
            return;
        };
        let rtt = now.saturating_sub(tx.first_sent);
        self.stun = None;
        self.mapped = Some(mapped);
        self.ev(VerticalEvent::StunMapped {
            mapped,
            server: from,
            rtt_ms: millis_f64(rtt),
        });
        for then in std::mem::take(&mut self.after_stun) {
            match then {
                AfterStun::Register => self.register(now, mapped),
                AfterStun::Call(peer) => self.lookup(now, peer),
                AfterStun::Answer(peer) => self.answer(now, peer, mapped),
                AfterStun::Move => self.re_invite(now, mapped),
            }
        }
    }

    /// Retransmits the STUN request if due; gives up after [`STUN_TRIES`], failing the calls
    /// that waited for it.
    pub(super) fn stun_due(&mut self, now: Time) {
        if let Some(tx) = &self.stun
            && tx.backoff.next() <= now
        {
            if tx.backoff.tries() >= STUN_TRIES {
                self.stun = None;
                self.ev(VerticalEvent::StunFailed {
                    reason: "no answer",
                });
                for then in std::mem::take(&mut self.after_stun) {
                    let peer = match then {
                        AfterStun::Call(p) | AfterStun::Answer(p) => p,
                        AfterStun::Register | AfterStun::Move => continue,
                    };
                    let mut failed = false;
                    for c in self.calls.iter_mut().filter(|c| {
                        c.peer == peer && matches!(c.state, VState::Stun | VState::Answering)
                    }) {
                        c.hang_up();
                        failed = true;
                    }
                    if failed {
                        self.ev(VerticalEvent::CallFailed {
                            peer: short_hex(&peer),
                            reason: "STUN failed",
                        });
                    }
                }
            } else {
                self.send_stun(now);
            }
        }
    }
}
