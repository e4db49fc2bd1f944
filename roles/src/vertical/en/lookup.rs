//! The vertical EN's lookup of a callee at its location server (Figure 1 steps 3-5), and
//! the Invite that follows the answer (step 8).

use super::VerticalNode;
use super::call::VState;
use super::events::VerticalEvent;
use crate::Time;
use crate::call::CallRole;
use crate::session::retransmit::{Backoff, RTO_INITIAL, RTO_MAX};
use crate::util::{millis_f64, short_hex};
use binfm_stack::wire::vertical::{Id, VmMessage};
use std::net::SocketAddrV4;

/// Lookup tries before giving up.
pub const LOOKUP_TRIES: u32 = 6;
/// Lookups in flight at most.
pub const MAX_LOOKUPS: usize = 64;

/// A Lookup waiting for its LookupReply.
#[derive(Debug, Clone)]
pub(super) struct Lookup {
    pub(super) peer: Id,
    pub(super) first_sent: Time,
    pub(super) backoff: Backoff,
}

impl VerticalNode {
    /// Step 3: ask the location server where `peer` is.
    pub(super) fn lookup(&mut self, now: Time, peer: Id) {
        let Some(i) = self
            .calls
            .iter()
            .position(|c| c.peer == peer && c.role == CallRole::Caller && c.state == VState::Stun)
        else {
            return;
        };
        if self.lookups.len() >= MAX_LOOKUPS {
            self.calls[i].hang_up();
            self.ev(VerticalEvent::CallFailed {
                peer: short_hex(&peer),
                reason: "too many lookups",
            });
            return;
        }
        let rid = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1).max(1);
        self.calls[i].state = VState::LookingUp(rid);
        self.lookups.insert(
            rid,
            Lookup {
                peer,
                first_sent: now,
                backoff: Backoff::new(RTO_INITIAL, RTO_MAX, now),
            },
        );
        self.send_lookup(now, rid);
    }

    pub(super) fn send_lookup(&mut self, now: Time, rid: u32) {
        let Some(l) = self.lookups.get_mut(&rid) else {
            return;
        };
        l.backoff.on_send(now);
        let (peer, tries) = (l.peer, l.backoff.tries());
        self.ev(VerticalEvent::LookupSent {
            peer: short_hex(&peer),
            request_id: rid,
            r#try: tries,
        });
        let bytes = VmMessage::Lookup {
            request_id: rid,
            id: peer,
        }
        .to_bytes();
        self.send(self.location, bytes);
    }

    /// Steps 5 and 8: the answer; invite the peer at its contact.
    pub(super) fn on_lookup_reply(
        &mut self,
        now: Time,
        rid: u32,
        id: Id,
        contact: Option<SocketAddrV4>,
    ) {
        let Some(l) = self.lookups.get(&rid) else {
            return;
        };
        if l.peer != id {
            self.ev(VerticalEvent::LookupRejected {
                request_id: rid,
                reason: "reply names another id",
            });
            return;
        }
        let rtt = now.saturating_sub(l.first_sent);
        self.lookups.remove(&rid);
        let Some(i) = self
            .calls
            .iter()
            .position(|c| c.state == VState::LookingUp(rid))
        else {
            return;
        };
        let Some(contact) = contact else {
            self.calls[i].hang_up();
            self.ev(VerticalEvent::LookupNotFound {
                peer: short_hex(&id),
                rtt_ms: millis_f64(rtt),
            });
            self.ev(VerticalEvent::CallFailed {
                peer: short_hex(&id),
                reason: "peer not found",
            });
            return;
        };
        self.ev(VerticalEvent::Resolved {
            peer: short_hex(&id),
            contact,
            rtt_ms: millis_f64(rtt),
        });
        let Some(mine) = self.mapped else { return };
        let c = &mut self.calls[i];
        c.peer_addr = Some(contact);
        c.state = VState::Inviting;
        let bytes = VmMessage::Invite {
            caller: self.id,
            callee: id,
            contact: mine,
            ssrc: c.media.ssrc(),
        }
        .to_bytes();
        c.set_pending(bytes.clone(), now, "invite");
        self.ev(VerticalEvent::InviteSent {
            peer: short_hex(&id),
            to: contact,
        });
        self.send(contact, bytes);
    }

    /// Retransmits the lookups due; gives up after [`LOOKUP_TRIES`], failing their calls.
    pub(super) fn lookups_due(&mut self, now: Time) {
        let due: Vec<u32> = self
            .lookups
            .iter()
            .filter(|(_, l)| l.backoff.next() <= now)
            .map(|(k, _)| *k)
            .collect();
        for rid in due {
            if self
                .lookups
                .get(&rid)
                .is_some_and(|l| l.backoff.tries() >= LOOKUP_TRIES)
            {
                if let Some(l) = self.lookups.remove(&rid) {
                    for c in self
                        .calls
                        .iter_mut()
                        .filter(|c| c.state == VState::LookingUp(rid))
                    {
                        c.hang_up();
                    }
                    self.ev(VerticalEvent::CallFailed {
                        peer: short_hex(&l.peer),
                        reason: "lookup unanswered",
                    });
                }
            } else {
                self.send_lookup(now, rid);
            }
        }
    }
}
