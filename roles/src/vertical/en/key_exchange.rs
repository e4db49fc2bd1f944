//! The vertical EN's key agreement (security step, Figure 1 steps 10-11) and rekey (Table
//! 3): a DH KeyExchange and its reply, the rekey ones authenticated with the control key.

use super::VerticalNode;
use super::call::{OwnExchange, VState};
use super::events::VerticalEvent;
use crate::Time;
use crate::call::CallRole;
use crate::dh::DhSecret;
use crate::session::keys::mac;
use crate::util::{millis_f64, short_hex};
use crate::work::Op;
use binfm_stack::wire::vertical::{VmMessage, mac_input};
use rand::RngExt;
use std::net::SocketAddrV4;

impl VerticalNode {
    /// Renews the session key of every active call (steps 10-11 again), authenticated with
    /// the current control key. A call with a rekey still in flight is skipped.
    pub fn rekey(&mut self, now: Time) {
        let me = self.id;
        for i in 0..self.calls.len() {
            let c = &self.calls[i];
            if c.state != VState::Active || c.own.is_some() || c.next_send.is_some() {
                continue;
            }
            let (Some(control), Some(to)) = (c.control, c.peer_addr) else {
                continue;
            };
            let secret = DhSecret::generate(&mut self.rng);
            self.work.add(Op::DhKeygen);
            let nonce: [u8; 16] = self.rng.random();
            let epoch = c.epoch + 1;
            let mut msg = VmMessage::KeyExchange {
                from: me,
                epoch,
                nonce,
                y: secret.public(),
                mac: [0; 16],
            };
            let tag = mac(&control, &mac_input(&msg));
            if let VmMessage::KeyExchange { mac: m, .. } = &mut msg {
                *m = tag;
            }
            let bytes = msg.to_bytes();
            let c = &mut self.calls[i];
            c.own = Some(OwnExchange {
                secret,
                nonce,
                epoch,
                sent_at: now,
            });
            c.set_pending(bytes.clone(), now, "rekey");
            let peer = c.peer;
            self.ev(VerticalEvent::RekeySent {
                peer: short_hex(&peer),
                epoch,
            });
            self.send(to, bytes);
        }
    }

    /// Step 10 (or a rekey) received: derive, answer (step 11).
    pub(super) fn on_key_exchange(&mut self, now: Time, from: SocketAddrV4, msg: &VmMessage) {
        let VmMessage::KeyExchange {
            from: peer,
            epoch,
            nonce,
            y,
            mac: tag,
        } = msg
        else {
            return;
        };
        let me = self.id;
        let Some(i) = self.calls.iter().position(|c| {
            c.peer == *peer
                && matches!(
                    c.state,
                    VState::AwaitKey | VState::Active | VState::KeyAgreement
                )
        }) else {
            self.ev(VerticalEvent::KeyRejected {
                peer: None,
                reason: "no such call",
                from: Some(from),
            });
            return;
        };
        // A retransmission of an exchange we answered: repeat the reply.
        if let Some((e, n, bytes)) = &self.calls[i].answered
            && *e == *epoch
            && n == nonce
        {
            if let Some(to) = self.calls[i].peer_addr {
                let bytes = bytes.clone();
                self.send(to, bytes);
            }
            return;
        }
        let c = &self.calls[i];
        let setup = *epoch == 0 && c.state == VState::AwaitKey;
        let rekey = c.state == VState::Active && *epoch == c.epoch + 1;
        if !setup && !rekey {
            self.refuse_key(i, "unexpected epoch");
            return;
        }
        if rekey {
            if !c.verify(msg, tag) {
                self.refuse_key(i, "bad_mac");
                return;
            }
            // Both sides started a rekey at once: the caller's wins.
            if c.own.as_ref().is_some_and(|o| o.epoch == *epoch) {
                if c.role == CallRole::Caller {
                    return;
                }
                let c = &mut self.calls[i];
                c.own = None;
                c.pending = None;
            }
        }
        let secret = DhSecret::generate(&mut self.rng);
        self.work.add(Op::DhKeygen);
        self.work.add(Op::DhAgree);
        let my_nonce: [u8; 16] = self.rng.random();
        let c = &self.calls[i];
        let shared = match secret.agree(y) {
            Ok(s) => s,
            Err(_) => {
                self.refuse_key(i, "bad_y");
                return;
            }
        };
        let keys = c.derive(&me, &shared, &my_nonce, nonce, *epoch);
        let mut reply = VmMessage::KeyExchangeReply {
            from: me,
            epoch: *epoch,
            nonce: my_nonce,
            y: secret.public(),
            mac: [0; 16],
        };
        if let (true, Some(control)) = (rekey, c.control) {
            let t = mac(&control, &mac_input(&reply));
            if let VmMessage::KeyExchangeReply { mac: m, .. } = &mut reply {
                *m = t;
            }
        }
        let bytes = reply.to_bytes();
        let c = &mut self.calls[i];
        c.answered = Some((*epoch, *nonce, bytes.clone()));
        let Some(to) = c.peer_addr else { return };
        self.send(to, bytes);
        let c = &mut self.calls[i];
        let peer = c.peer;
        if setup {
            c.activate(keys, now);
            let setup_ms = millis_f64(now.saturating_sub(c.started_at));
            self.ev(VerticalEvent::Active {
                peer: short_hex(&peer),
                role: "callee",
                setup_ms,
            });
            // Audio starts with the keys: the first frame follows the reply.
            self.media_due(now);
        } else {
            // We hold the new key now. Keep sending with the old one until the peer is seen
            // using the new one (it cannot decrypt it before our reply arrives).
            c.media.expect_next_key(keys.recv);
            c.next_send = Some(keys.send);
            c.prev_control = c.control;
            c.control = Some(keys.control);
            c.epoch = *epoch;
            self.ev(VerticalEvent::RekeyAccepted {
                peer: short_hex(&peer),
                epoch: *epoch,
            });
        }
    }

    pub(super) fn refuse_key(&mut self, i: usize, reason: &'static str) {
        let c = &mut self.calls[i];
        c.control_refused += 1;
        let peer = c.peer;
        self.ev(VerticalEvent::KeyRejected {
            peer: Some(short_hex(&peer)),
            reason,
            from: None,
        });
    }

    /// Step 11 (or a rekey reply) received.
    pub(super) fn on_key_reply(&mut self, now: Time, msg: &VmMessage) {
        let VmMessage::KeyExchangeReply {
            from: peer,
            epoch,
            nonce,
            y,
            mac: tag,
        } = msg
        else {
            return;
        };
        let me = self.id;
        let Some(i) = self
            .calls
            .iter()
            .position(|c| c.peer == *peer && c.own.as_ref().is_some_and(|o| o.epoch == *epoch))
        else {
            return; // a repeated reply
        };
        let c = &self.calls[i];
        let setup = c.state == VState::KeyAgreement && *epoch == 0;
        if !setup && !c.verify(msg, tag) {
            self.refuse_key(i, "bad_mac");
            return;
        }
        let Some(own) = &c.own else { return };
        self.work.add(Op::DhAgree);
        let shared = match own.secret.agree(y) {
            Ok(s) => s,
            Err(_) => {
                self.refuse_key(i, "bad_y");
                return;
            }
        };
        let keys = c.derive(&me, &shared, &own.nonce, nonce, *epoch);
        let took = now.saturating_sub(own.sent_at);
        let c = &mut self.calls[i];
        c.own = None;
        c.pending = None;
        let peer = c.peer;
        if setup {
            c.activate(keys, now);
            let setup_ms = millis_f64(now.saturating_sub(c.started_at));
            self.ev(VerticalEvent::Active {
                peer: short_hex(&peer),
                role: "caller",
                setup_ms,
            });
            self.media_due(now);
        } else {
            // The peer already accepts the new key: switch sending now.
            c.media.set_send_key(keys.send);
            c.media.expect_next_key(keys.recv);
            c.prev_control = c.control;
            c.control = Some(keys.control);
            c.epoch = *epoch;
            self.ev(VerticalEvent::RekeyDone {
                peer: short_hex(&peer),
                epoch: *epoch,
                rekey_ms: millis_f64(took),
            });
        }
    }
}
