//! The EN's calls (paper, Figures 8-10): starting and answering a call once the peer's Tx is
//! looked up, the key confirmation, the handover and key renewal messages, and routing media
//! and control to the right [`Call`].

use super::events::EnEvent;
use super::lookup::PeerInfo;
use super::{EndNode, power_of_ten};
use crate::Time;
use crate::call::{Call, CallRole, CallState};
use crate::call_events::CallEvent;
use crate::session::media::rtp_ssrc;
use crate::util::hex;
use binfm_stack::wire::binfm::Message;
use binfm_stack::wire::toall::HashAddr;
use rand::RngExt;
use std::net::SocketAddrV4;
use std::time::Duration;

/// A caller whose peer is "not found" asks again this many times: the peer may have
/// registered a moment ago, and Replies carry only Txs that are in a block.
pub const NOT_FOUND_RETRIES: u32 = 5;
/// Wait before asking again about a peer that was not found (about one block interval).
pub const NOT_FOUND_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Calls an EN keeps at most: active, being set up, and ended ones (kept for their
/// statistics). A new call (outgoing, or an incoming Session Request) first makes room by
/// forgetting the oldest ended call; when all are live it is refused and counted
/// (`EndNode::calls_refused`), so a Session Request flood cannot grow the list.
pub const MAX_CALLS: usize = 128;

impl EndNode {
    /// Starts a call to `peer` (paper, Figure 8): Query for the peer's Tx first.
    pub fn call(&mut self, now: Time, peer: HashAddr) {
        if !self.room_for_call(&peer, None) {
            self.events.push_back(
                CallEvent::Failed {
                    peer: hex(&peer),
                    reason: "too many calls".to_owned(),
                }
                .into(),
            );
            return;
        }
        let nonce: [u8; 16] = self.rng.random();
        let ssrc: u32 = self.rng.random();
        let call = Call::new(peer, CallRole::Caller, nonce, ssrc, self.tone_hz, now);
        self.events.push_back(
            CallEvent::Started {
                peer: hex(&peer),
                ssrc,
            }
            .into(),
        );
        self.look_up_peer(now, call);
    }

    /// Room for one more call: forgets the oldest ended call if the list is full. False
    /// (counted, reported on the 1st, 10th, 100th, ... refusal) when every call is live.
    pub(super) fn room_for_call(&mut self, peer: &HashAddr, from: Option<SocketAddrV4>) -> bool {
        if self.calls.len() < MAX_CALLS {
            return true;
        }
        if let Some(i) = self.calls.iter().position(|c| c.state == CallState::Ended) {
            self.calls.remove(i);
            return true;
        }
        self.calls_refused += 1;
        if power_of_ten(self.calls_refused) {
            self.events.push_back(
                CallEvent::Refused {
                    reason: "too many calls",
                    peer: hex(peer),
                    from,
                    count: self.calls_refused,
                }
                .into(),
            );
        }
        false
    }

    /// Both ends of a call start by looking the peer up (Figure 8); the call waits for it.
    pub(super) fn look_up_peer(&mut self, now: Time, mut call: Call) {
        match self.lookup(now, call.peer) {
            Some(id) => {
                call.state = CallState::LookingUp(id);
                self.calls.push(call);
            }
            None => self.events.push_back(
                CallEvent::Failed {
                    peer: hex(&call.peer),
                    reason: "lookup refused".to_owned(),
                }
                .into(),
            ),
        }
    }

    /// Hangs up the call with `peer`.
    pub fn hangup(&mut self, _now: Time, peer: HashAddr) {
        for c in self
            .calls
            .iter_mut()
            .filter(|c| c.peer == peer && c.state != CallState::Ended)
        {
            c.hang_up();
            self.events.push_back(
                CallEvent::Ended {
                    peer: hex(&peer),
                    frames_sent: c.media.frames_sent,
                    frames_received: c.media.rx_stats.summary().received,
                }
                .into(),
            );
        }
    }

    /// Renews the DH key (paper, Figure 10): a Key Renewal to every active call's peer,
    /// authenticated with the current session key, and a new ToALL Tx with the new Y.
    pub fn rekey(&mut self, now: Time) {
        self.wallet.renew_dh(&mut self.rng);
        let me = self.wallet.hash_addr();
        let y = self.wallet.dh().public();
        let mut sends = Vec::new();
        for c in self
            .calls
            .iter_mut()
            .filter(|c| c.state == CallState::Active)
        {
            let Some(peer_y) = c.peer_y().map(<[u8]>::to_vec) else {
                continue;
            };
            let Ok(shared) = self.wallet.dh().agree(&peer_y) else {
                continue;
            };
            if let Some(o) = c.renew(me, y.clone(), &shared, now) {
                self.events.push_back(
                    CallEvent::RekeySent {
                        peer: hex(&c.peer),
                        epoch: c.epoch() + 1,
                    }
                    .into(),
                );
                sends.push(o);
            }
        }
        for (to, payload) in sends {
            self.send(to, payload);
        }
        self.register(now, "key_renewal");
    }

    /// Mid-call handover (paper, Figure 9): tell every active call's peer at once.
    pub(super) fn hand_over(&mut self, now: Time, private: SocketAddrV4, nat: SocketAddrV4) {
        let me = self.wallet.hash_addr();
        let mut sends = Vec::new();
        for c in self
            .calls
            .iter_mut()
            .filter(|c| c.state == CallState::Active)
        {
            if let Some(o) = c.handover(me, private, nat, now) {
                self.events.push_back(
                    CallEvent::HandoverSent {
                        peer: hex(&c.peer),
                        private,
                        nat_guess: nat,
                    }
                    .into(),
                );
                sends.push(o);
            }
        }
        for (to, payload) in sends {
            self.send(to, payload);
        }
    }

    /// A lookup finished: the call waiting for it goes on.
    pub(super) fn continue_call(&mut self, now: Time, request_id: u32, info: Option<&PeerInfo>) {
        let me = self.wallet.hash_addr();
        let Some(idx) = self
            .calls
            .iter()
            .position(|c| c.state == CallState::LookingUp(request_id))
        else {
            return;
        };
        let Some(info) = info else {
            let peer = self.calls[idx].peer;
            let tries = self.not_found.get(&peer).map_or(0, |e| e.1);
            // Only a caller asks again. A callee's lookup of an unknown caller ends the call
            // at once (a spoofed Request must not hold a call slot); a real caller
            // retransmits its Request, which starts a new lookup.
            if self.calls[idx].role == CallRole::Caller && tries < NOT_FOUND_RETRIES {
                self.not_found
                    .insert(peer, (Some(now + NOT_FOUND_RETRY_AFTER), tries + 1));
                self.events.push_back(
                    CallEvent::PeerNotFoundYet {
                        peer: hex(&peer),
                        retry: tries + 1,
                        retry_in_ms: NOT_FOUND_RETRY_AFTER.as_millis() as u64,
                    }
                    .into(),
                );
                return;
            }
            self.not_found.remove(&peer);
            let c = &mut self.calls[idx];
            c.hang_up();
            self.events.push_back(
                CallEvent::Failed {
                    peer: hex(&c.peer),
                    reason: "peer not found".to_owned(),
                }
                .into(),
            );
            return;
        };
        self.not_found.remove(&self.calls[idx].peer);
        let nat = SocketAddrV4::new(info.tx.out.nat_ip, info.tx.out.nat_port);
        let c = &mut self.calls[idx];
        c.set_peer_registration(info.tx.out.y.clone(), nat);
        match c.role {
            CallRole::Caller if c.saved_response.is_some() => {
                if let Some(resp) = self.calls[idx].saved_response.take() {
                    self.calls[idx].state = CallState::Requesting;
                    self.finish_setup(now, idx, &resp, None);
                }
            }
            CallRole::Caller => {
                if let Some((to, payload)) = c.request(me, now) {
                    self.events.push_back(
                        CallEvent::RequestSent {
                            peer: hex(&c.peer),
                            to,
                        }
                        .into(),
                    );
                    self.send(to, payload);
                }
            }
            CallRole::Callee => match self.wallet.dh().agree(&info.tx.out.y) {
                Ok(shared) => {
                    if let Some((to, payload)) = c.answer(&shared, me, now) {
                        self.events.push_back(
                            CallEvent::Active {
                                peer: hex(&c.peer),
                                role: "callee",
                                peer_addr: Some(to),
                            }
                            .into(),
                        );
                        self.send(to, payload);
                    }
                }
                Err(e) => {
                    c.hang_up();
                    self.events.push_back(
                        CallEvent::Failed {
                            peer: hex(&c.peer),
                            reason: e.to_string(),
                        }
                        .into(),
                    );
                }
            },
        }
    }

    pub(super) fn on_session_request(
        &mut self,
        now: Time,
        from: SocketAddrV4,
        caller: HashAddr,
        callee: HashAddr,
        nonce: [u8; 16],
        ssrc: u32,
    ) {
        if callee != self.wallet.hash_addr() {
            self.events.push_back(
                CallEvent::RequestRefused {
                    reason: "not for us",
                    from,
                }
                .into(),
            );
            return;
        }
        // A retransmitted request of a call we already know: our Response (if we sent one)
        // was lost, so send it again; otherwise we are still looking the caller up.
        if let Some(c) = self.calls.iter().find(|c| {
            c.peer == caller && c.peer_nonce() == Some(nonce) && c.state != CallState::Ended
        }) {
            if let Some(resp) = c.sent_response() {
                let payload = resp.to_vec();
                self.events.push_back(
                    CallEvent::ResponseResent {
                        peer: hex(&caller),
                        to: from,
                    }
                    .into(),
                );
                self.send(from, payload);
            }
            return;
        }
        if !self.room_for_call(&caller, Some(from)) {
            return;
        }
        let my_nonce: [u8; 16] = self.rng.random();
        let my_ssrc: u32 = self.rng.random();
        let mut call = Call::new(
            caller,
            CallRole::Callee,
            my_nonce,
            my_ssrc,
            self.tone_hz,
            now,
        );
        call.on_request(from, nonce, ssrc);
        self.events.push_back(
            CallEvent::Incoming {
                peer: hex(&caller),
                from,
            }
            .into(),
        );
        // Figure 8: the callee looks the caller up too, and trusts only what the chain says.
        self.look_up_peer(now, call);
    }

    pub(super) fn on_session_response(&mut self, now: Time, from: SocketAddrV4, msg: &Message) {
        let Message::SessionResponse { caller, callee, .. } = msg else {
            return;
        };
        if *caller != self.wallet.hash_addr() {
            return;
        }
        let Some(idx) = self.calls.iter().position(|c| {
            c.peer == *callee && c.role == CallRole::Caller && c.state == CallState::Requesting
        }) else {
            return; // a retransmitted response for an active call, or unknown
        };
        self.finish_setup(now, idx, msg, Some(from));
    }

    /// Caller side: keys from the callee's registered Y, checked against the Response's key
    /// confirmation. If the check fails the callee may have renewed its key after the Tx we
    /// used (its new Tx not yet confirmed when we looked it up): look it up once more and
    /// retry with the same Response (`retry_from` is `None` on that second try).
    pub(super) fn finish_setup(
        &mut self,
        now: Time,
        idx: usize,
        msg: &Message,
        retry_from: Option<SocketAddrV4>,
    ) {
        let me = self.wallet.hash_addr();
        let have_address = self.private.is_some();
        let c = &mut self.calls[idx];
        let Some(peer_y) = c.peer_y().map(<[u8]>::to_vec) else {
            return;
        };
        let shared = match self.wallet.dh().agree(&peer_y) {
            Ok(s) => s,
            Err(e) => {
                c.hang_up();
                self.events.push_back(
                    CallEvent::Failed {
                        peer: hex(&c.peer),
                        reason: e.to_string(),
                    }
                    .into(),
                );
                return;
            }
        };
        match c.on_response(&shared, me, msg, now) {
            Ok(()) => {
                self.events.push_back(
                    CallEvent::Active {
                        peer: hex(&c.peer),
                        role: "caller",
                        peer_addr: c.peer_addr,
                    }
                    .into(),
                );
                // Audio starts the moment the keys are ready: the first frame goes now.
                let mut out = Vec::new();
                let mut evs = Vec::new();
                c.on_timeout(now, have_address, &mut out, &mut evs);
                self.events.extend(evs);
                for (to, payload) in out {
                    self.send(to, payload);
                }
            }
            Err(reason) => {
                let peer = c.peer;
                self.events.push_back(
                    CallEvent::ConfirmFailed {
                        peer: hex(&peer),
                        reason,
                        retry: retry_from.is_some(),
                    }
                    .into(),
                );
                if retry_from.is_none() {
                    c.hang_up();
                    self.events.push_back(
                        CallEvent::Failed {
                            peer: hex(&peer),
                            reason: reason.to_owned(),
                        }
                        .into(),
                    );
                    return;
                }
                c.saved_response = Some(msg.clone());
                match self.lookup(now, peer) {
                    Some(id) => self.calls[idx].state = CallState::LookingUp(id),
                    None => self.calls[idx].hang_up(),
                }
            }
        }
    }

    pub(super) fn on_handover(
        &mut self,
        _now: Time,
        from: SocketAddrV4,
        sender: HashAddr,
        msg: &Message,
    ) {
        let Some(c) = self
            .calls
            .iter_mut()
            .find(|c| c.peer == sender && c.state == CallState::Active)
        else {
            self.events.push_back(
                CallEvent::HandoverRejected {
                    peer: None,
                    reason: "no such call",
                    from,
                }
                .into(),
            );
            return;
        };
        match c.on_handover(from, msg) {
            Ok(()) => self.events.push_back(
                CallEvent::HandoverAccepted {
                    peer: hex(&sender),
                    new_addr: from,
                }
                .into(),
            ),
            Err(reason) => self.events.push_back(
                CallEvent::HandoverRejected {
                    peer: Some(hex(&sender)),
                    reason,
                    from,
                }
                .into(),
            ),
        }
    }

    pub(super) fn on_key_renewal(
        &mut self,
        _now: Time,
        from: SocketAddrV4,
        sender: HashAddr,
        msg: &Message,
    ) {
        let me = self.wallet.hash_addr();
        let Some(c) = self
            .calls
            .iter_mut()
            .find(|c| c.peer == sender && c.state == CallState::Active)
        else {
            self.events.push_back(
                CallEvent::RekeyRejected {
                    peer: None,
                    reason: "no such call",
                    from: Some(from),
                }
                .into(),
            );
            return;
        };
        let wallet = &self.wallet;
        let shared_for = |y: &[u8]| -> Option<Vec<u8>> { wallet.dh().agree(y).ok() };
        match c.on_renewal(msg, shared_for, me) {
            Ok(()) => self.events.push_back(
                CallEvent::RekeyAccepted {
                    peer: hex(&sender),
                    epoch: c.epoch(),
                }
                .into(),
            ),
            Err("replayed") => {}
            Err(reason) => self.events.push_back(
                CallEvent::RekeyRejected {
                    peer: Some(hex(&sender)),
                    reason,
                    from: None,
                }
                .into(),
            ),
        }
    }

    /// SRTP media: to the active call whose peer sends with this SSRC.
    pub(super) fn on_media(&mut self, now: Time, from: SocketAddrV4, data: &[u8]) {
        let ssrc = rtp_ssrc(data);
        let mut evs = Vec::new();
        match self
            .calls
            .iter_mut()
            .find(|c| c.state == CallState::Active && c.media.is_from_peer(ssrc))
        {
            Some(c) => c.on_media(now, data, &mut evs),
            None => {
                // Counted; reported on the 1st, 10th, 100th, ... so a flood cannot fill the log.
                self.unknown_media += 1;
                if power_of_ten(self.unknown_media) {
                    self.events.push_back(
                        EnEvent::MediaUnknownSsrc {
                            from,
                            count: self.unknown_media,
                        }
                        .into(),
                    );
                }
            }
        }
        self.events.extend(evs);
    }

    /// Media and control retransmissions of every call, and peers to look up again.
    pub(super) fn calls_due(&mut self, now: Time) {
        let have_address = self.private.is_some();
        let mut out = Vec::new();
        let mut evs = Vec::new();
        for c in &mut self.calls {
            c.on_timeout(now, have_address, &mut out, &mut evs);
        }
        self.events.extend(evs);
        for (to, payload) in out {
            self.send(to, payload);
        }
        let again: Vec<HashAddr> = self
            .not_found
            .iter()
            .filter(|(_, (at, _))| at.is_some_and(|t| t <= now))
            .map(|(p, _)| *p)
            .collect();
        for peer in again {
            if let Some(e) = self.not_found.get_mut(&peer) {
                e.0 = None;
            }
            let waiting = self
                .calls
                .iter()
                .position(|c| c.peer == peer && matches!(c.state, CallState::LookingUp(_)));
            match (waiting, have_address) {
                (Some(i), true) => match self.lookup(now, peer) {
                    Some(id) => self.calls[i].state = CallState::LookingUp(id),
                    None => {
                        self.not_found.remove(&peer);
                    }
                },
                // No address right now: try again a little later.
                (Some(_), false) => {
                    if let Some(e) = self.not_found.get_mut(&peer) {
                        e.0 = Some(now + NOT_FOUND_RETRY_AFTER);
                    }
                }
                (None, _) => {
                    self.not_found.remove(&peer);
                }
            }
        }
    }
}
