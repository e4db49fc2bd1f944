//! The vertical EN's media glue: incoming SRTP routed to its call by SSRC, and every
//! call's audio frames and control retransmissions when due.

use super::VerticalNode;
use super::call::VState;
use super::events::VerticalEvent;
use crate::Time;
use crate::session::media::rtp_ssrc;
use crate::session::srtp::KeyUsed;
use crate::util::short_hex;
use std::net::SocketAddrV4;

impl VerticalNode {
    /// Media from a peer. Media after our re-invite means the peer switched; media under
    /// the next key lets a rekey responder switch its sending key.
    pub(super) fn on_media(&mut self, now: Time, from: SocketAddrV4, packet: &[u8]) {
        let ssrc = rtp_ssrc(packet);
        let Some(c) = self
            .calls
            .iter_mut()
            .find(|c| c.state == VState::Active && c.media.is_from_peer(ssrc))
        else {
            self.ev(VerticalEvent::MediaUnknownSsrc { from });
            return;
        };
        let mut evs = Vec::new();
        if let Some(rx) = c.media.receive(now, packet, &c.peer, &mut evs) {
            // Media after our re-invite: the peer has switched; stop repeating.
            if c.pending.as_ref().is_some_and(|p| p.what() == "reinvite") {
                c.pending = None;
            }
            if rx.key == KeyUsed::Next
                && let Some(k) = c.next_send.take()
            {
                // Rekey responder: the initiator sends with the new key; so do we.
                c.media.set_send_key(k);
                evs.push(
                    VerticalEvent::RekeySwitched {
                        peer: short_hex(&c.peer),
                        epoch: c.epoch,
                    }
                    .into(),
                );
            }
        }
        self.events.extend(evs);
    }

    /// Media frames due by `now`, and control retransmissions of every call.
    pub(super) fn media_due(&mut self, now: Time) {
        let have_address = self.local.is_some();
        let mut sends = Vec::new();
        let mut evs = Vec::new();
        for c in &mut self.calls {
            if let Some(p) = &mut c.pending
                && p.on_timeout(now, c.peer_addr, have_address, &mut sends)
            {
                evs.push(
                    VerticalEvent::ControlGaveUp {
                        what: p.what(),
                        peer: short_hex(&c.peer),
                    }
                    .into(),
                );
                c.pending = None;
                if c.state != VState::Active {
                    c.hang_up();
                    evs.push(
                        VerticalEvent::CallFailed {
                            peer: short_hex(&c.peer),
                            reason: "no answer",
                        }
                        .into(),
                    );
                } else {
                    c.own = None;
                }
            }
            if c.state == VState::Active {
                c.media.send_due(now, c.peer_addr, have_address, &mut sends);
            }
        }
        self.events.extend(evs);
        for (to, bytes) in sends {
            self.send(to, bytes);
        }
    }
}
