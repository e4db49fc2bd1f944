//! The vertical EN's calls: starting one (STUN, then lookup), the Invite/InviteOk exchange
//! (Figure 1 steps 8-9), hanging up, and the authenticated ReInvite after a move (Figure 11
//! step 3).

use super::VerticalNode;
use super::call::{OwnExchange, VState, VerticalCall};
use super::events::VerticalEvent;
use super::stun::AfterStun;
use crate::Time;
use crate::call::CallRole;
use crate::dh::DhSecret;
use crate::session::keys::mac;
use crate::util::short_hex;
use crate::work::Op;
use binfm_stack::wire::vertical::{Id, VmMessage, mac_input};
use rand::RngExt;
use std::net::SocketAddrV4;

/// Calls (all states) kept at most; an Invite beyond is refused.
pub const MAX_CALLS: usize = 64;

impl VerticalNode {
    /// Starts a call to `peer` (Figure 1): STUN first, then the lookup.
    pub fn call(&mut self, now: Time, peer: Id) {
        let ssrc: u32 = self.rng.random();
        self.ev(VerticalEvent::CallStarted {
            peer: short_hex(&peer),
            ssrc,
        });
        if self.calls.len() >= MAX_CALLS {
            self.prune();
        }
        let busy = self
            .calls
            .iter()
            .any(|c| c.peer == peer && c.state != VState::Ended);
        if self.calls.len() >= MAX_CALLS || self.local.is_none() || busy {
            let reason = if self.local.is_none() {
                "no address"
            } else if busy {
                "already in a call with this peer"
            } else {
                "too many calls"
            };
            self.ev(VerticalEvent::CallFailed {
                peer: short_hex(&peer),
                reason,
            });
            return;
        }
        let call = VerticalCall::new(peer, CallRole::Caller, VState::Stun, ssrc, &self.audio, now);
        self.calls.push(call);
        self.want_stun(now, AfterStun::Call(peer));
    }

    /// Hangs up the calls with `peer`.
    pub fn hangup(&mut self, _now: Time, peer: Id) {
        let mut evs = Vec::new();
        for c in self
            .calls
            .iter_mut()
            .filter(|c| c.peer == peer && c.state != VState::Ended)
        {
            c.hang_up();
            evs.push(
                VerticalEvent::Ended {
                    peer: short_hex(&peer),
                    frames_sent: c.media.frames_sent,
                    frames_received: c.media.rx_stats.summary().received,
                }
                .into(),
            );
        }
        self.events.extend(evs);
    }

    pub(super) fn prune(&mut self) {
        if let Some(i) = self.calls.iter().position(|c| c.state == VState::Ended) {
            self.calls.remove(i);
        }
    }

    /// Callee, step 8 received: run STUN (steps 6-7), then answer.
    pub(super) fn on_invite(
        &mut self,
        now: Time,
        from: SocketAddrV4,
        caller: Id,
        callee: Id,
        contact: SocketAddrV4,
        ssrc: u32,
    ) {
        if callee != self.id {
            self.ev(VerticalEvent::InviteRefused {
                reason: "not for us",
                from,
            });
            return;
        }
        if let Some(c) = self.calls.iter().find(|c| {
            c.peer == caller && c.media.peer_ssrc() == Some(ssrc) && c.state != VState::Ended
        }) {
            // A retransmitted Invite: repeat our answer if we gave one.
            if let (Some(bytes), Some(to)) = (c.invite_ok.clone(), c.peer_addr) {
                self.send(to, bytes);
            }
            return;
        }
        if self.calls.len() >= MAX_CALLS {
            self.prune();
        }
        if self.calls.len() >= MAX_CALLS {
            self.ev(VerticalEvent::InviteRefused {
                reason: "too many calls",
                from,
            });
            return;
        }
        let my_ssrc: u32 = self.rng.random();
        let mut c = VerticalCall::new(
            caller,
            CallRole::Callee,
            VState::Answering,
            my_ssrc,
            &self.audio,
            now,
        );
        c.peer_addr = Some(contact);
        c.media.set_peer_ssrc(ssrc);
        self.calls.push(c);
        self.ev(VerticalEvent::Incoming {
            peer: short_hex(&caller),
            contact,
            from,
        });
        self.want_stun(now, AfterStun::Answer(caller));
    }

    /// Callee, step 9.
    pub(super) fn answer(&mut self, _now: Time, peer: Id, mine: SocketAddrV4) {
        let Some(c) = self
            .calls
            .iter_mut()
            .find(|c| c.peer == peer && c.role == CallRole::Callee && c.state == VState::Answering)
        else {
            return;
        };
        let Some(to) = c.peer_addr else { return };
        let bytes = VmMessage::InviteOk {
            caller: peer,
            callee: self.id,
            contact: mine,
            ssrc: c.media.ssrc(),
        }
        .to_bytes();
        c.state = VState::AwaitKey;
        c.invite_ok = Some(bytes.clone());
        self.ev(VerticalEvent::InviteOkSent {
            peer: short_hex(&peer),
            contact: mine,
        });
        self.send(to, bytes);
    }

    /// Caller, step 9 received: start the key agreement (step 10).
    pub(super) fn on_invite_ok(
        &mut self,
        now: Time,
        caller: Id,
        callee: Id,
        contact: SocketAddrV4,
        ssrc: u32,
    ) {
        if caller != self.id {
            return;
        }
        let Some(i) = self.calls.iter().position(|c| {
            c.peer == callee && c.role == CallRole::Caller && c.state == VState::Inviting
        }) else {
            return; // a repeated InviteOk
        };
        let secret = DhSecret::generate(&mut self.rng);
        self.work.add(Op::DhKeygen);
        let nonce: [u8; 16] = self.rng.random();
        let bytes = VmMessage::KeyExchange {
            from: self.id,
            epoch: 0,
            nonce,
            y: secret.public(),
            mac: [0; 16],
        }
        .to_bytes();
        let c = &mut self.calls[i];
        c.media.set_peer_ssrc(ssrc);
        c.peer_addr = Some(contact);
        c.state = VState::KeyAgreement;
        c.own = Some(OwnExchange {
            secret,
            nonce,
            epoch: 0,
            sent_at: now,
        });
        c.set_pending(bytes.clone(), now, "key_exchange");
        self.ev(VerticalEvent::InviteOk {
            peer: short_hex(&callee),
            contact,
        });
        self.ev(VerticalEvent::KeySent {
            peer: short_hex(&callee),
            epoch: 0,
        });
        self.send(contact, bytes);
    }

    /// Mid-call step 3: tell every active call's peer our new contact.
    pub(super) fn re_invite(&mut self, now: Time, contact: SocketAddrV4) {
        let me = self.id;
        let mut sends = Vec::new();
        let mut evs = Vec::new();
        for c in self.calls.iter_mut().filter(|c| c.state == VState::Active) {
            let (Some(control), Some(to)) = (c.control, c.peer_addr) else {
                continue;
            };
            c.send_counter += 1;
            let mut msg = VmMessage::ReInvite {
                from: me,
                counter: c.send_counter,
                contact,
                mac: [0; 16],
            };
            let tag = mac(&control, &mac_input(&msg));
            if let VmMessage::ReInvite { mac: m, .. } = &mut msg {
                *m = tag;
            }
            let bytes = msg.to_bytes();
            c.set_pending(bytes.clone(), now, "reinvite");
            evs.push(
                VerticalEvent::ReinviteSent {
                    peer: short_hex(&c.peer),
                    contact,
                }
                .into(),
            );
            sends.push((to, bytes));
        }
        self.events.extend(evs);
        for (to, bytes) in sends {
            self.send(to, bytes);
        }
    }

    pub(super) fn on_re_invite(&mut self, from: SocketAddrV4, msg: &VmMessage) {
        let VmMessage::ReInvite {
            from: peer,
            counter,
            contact,
            mac: tag,
        } = msg
        else {
            return;
        };
        let Some(i) = self
            .calls
            .iter()
            .position(|c| c.peer == *peer && c.state == VState::Active)
        else {
            self.ev(VerticalEvent::ReinviteRejected {
                peer: None,
                reason: "no such call",
                from,
            });
            return;
        };
        let c = &mut self.calls[i];
        let reason = if !c.verify(msg, tag) {
            Some("bad_mac")
        } else if *counter <= c.recv_counter {
            Some("replayed")
        } else {
            None
        };
        if let Some(reason) = reason {
            c.control_refused += 1;
            self.ev(VerticalEvent::ReinviteRejected {
                peer: Some(short_hex(peer)),
                reason,
                from,
            });
            return;
        }
        c.recv_counter = *counter;
        c.peer_addr = Some(*contact);
        self.ev(VerticalEvent::ReinviteAccepted {
            peer: short_hex(peer),
            contact: *contact,
            from,
        });
    }
}
