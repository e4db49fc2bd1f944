//! The EN's calls (paper, Figures 8-10): starting and answering a call once the peer's Tx is
//! looked up, the key confirmation, the handover and key renewal messages, and routing media
//! and control to the right [`Call`].

use super::events::EnEvent;
use super::lookup::PeerInfo;
use super::{EndNode, power_of_ten};
use crate::Time;
use crate::call::{
    Call, CallRole, CallState, HandoverOutcome, RenewalOutcome, verify_session_request,
};
use crate::call_events::CallEvent;
use crate::dh::validate_public;
use crate::ratelimit::RateLimitConfig;
use crate::session::media::rtp_ssrc;
use crate::util::hex;
use crate::work::Op;
use binfm_stack::wire::binfm::Message;
use binfm_stack::wire::toall::HashAddr;
use rand::RngExt;
use std::net::SocketAddrV4;
use std::time::Duration;

/// A caller whose peer is "not found" asks again this many times: the peer may have
/// registered a moment ago, and Replies carry only Txs that are in a block. A caller whose
/// peer's key is pending (renewed, not in a block yet) asks again as often.
pub const NOT_FOUND_RETRIES: u32 = 5;
/// Wait before asking again about a peer that was not found (about one block interval).
pub const NOT_FOUND_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Calls an EN keeps at most: active, being set up, and ended ones (kept for their
/// statistics). A new call (outgoing, or an incoming Session Request) first makes room by
/// forgetting the oldest ended call; when all are live it is refused and counted
/// (`EndNode::calls_refused`), so a Session Request flood cannot grow the list.
pub const MAX_CALLS: usize = 128;
/// Lookups an EN makes at once for callers that asked it (of its
/// [`super::MAX_PENDING_QUERIES`]): the rest stay for its own calls, so requests naming
/// made-up callers cannot take its lookup budget (attack 5).
pub const MAX_INCOMING_LOOKUPS: usize = 16;
/// Signed Session Requests that make the callee look a caller up, per source IPv4 address.
pub const REQUEST_SOURCE_LIMIT: RateLimitConfig = RateLimitConfig {
    rate_per_s: 5,
    burst: 10,
    max_sources: 1024,
};
/// The same, per caller hash address (a caller retransmits every 500 ms).
pub const REQUEST_CALLER_LIMIT: RateLimitConfig = RateLimitConfig {
    rate_per_s: 2,
    burst: 4,
    max_sources: 1024,
};
/// Requests answered that the EN remembers (caller, nonce), so a replayed one after its call
/// ended starts nothing.
pub const ANSWERED_REMEMBERED: usize = 1024;

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
        // A new call counts its own lookups again.
        self.not_found.remove(&peer);
        let nonce: [u8; 16] = self.rng.random();
        let ssrc: u32 = self.rng.random();
        let mut call = Call::new(peer, CallRole::Caller, nonce, ssrc, self.audio.clone(), now);
        call.set_consent_timeout(self.consent_timeout);
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
        self.work.add(Op::DhKeygen);
        let me = self.wallet.hash_addr();
        let mut sends = Vec::new();
        let calls = &mut self.calls;
        let rng = &mut self.rng;
        for c in calls.iter_mut().filter(|c| c.state == CallState::Active) {
            match c.renew(me, rng, now) {
                Ok(o) => {
                    self.events.push_back(
                        CallEvent::RekeySent {
                            peer: hex(&c.peer),
                            epoch: c.epoch() + 1,
                        }
                        .into(),
                    );
                    sends.push(o);
                }
                Err(reason) => self.events.push_back(
                    CallEvent::RekeyRejected {
                        peer: Some(hex(&c.peer)),
                        reason,
                        from: None,
                    }
                    .into(),
                ),
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

    /// A lookup got no answer from any super node: the call waiting for it fails.
    pub(super) fn lookup_gave_up(&mut self, request_id: u32) {
        if let Some(idx) = self
            .calls
            .iter()
            .position(|c| c.state == CallState::LookingUp(request_id))
        {
            self.lookup_failed(idx, "no super node answered the lookup");
        }
    }

    /// The call at `idx`, waiting for a lookup, fails for `reason`; its retry count goes.
    fn lookup_failed(&mut self, idx: usize, reason: &str) {
        let Some(c) = self.calls.get_mut(idx) else {
            return;
        };
        self.not_found.remove(&c.peer);
        c.hang_up();
        self.events.push_back(
            CallEvent::Failed {
                peer: hex(&c.peer),
                reason: reason.to_owned(),
            }
            .into(),
        );
    }

    /// Schedules another lookup of `peer` in [`NOT_FOUND_RETRY_AFTER`] unless it was asked
    /// [`NOT_FOUND_RETRIES`] times already (then `false`); reports it as the peer not found
    /// yet, or (`key_pending`) as its renewed key not in a block yet.
    fn ask_again_later(&mut self, now: Time, peer: HashAddr, key_pending: bool) -> bool {
        let tries = self.not_found.get(&peer).map_or(0, |e| e.1);
        if tries >= NOT_FOUND_RETRIES {
            return false;
        }
        self.not_found
            .insert(peer, (Some(now + NOT_FOUND_RETRY_AFTER), tries + 1));
        let (peer, retry) = (hex(&peer), tries + 1);
        let retry_in_ms = NOT_FOUND_RETRY_AFTER.as_millis() as u64;
        self.events.push_back(
            if key_pending {
                CallEvent::PeerKeyPending {
                    peer,
                    retry,
                    retry_in_ms,
                }
            } else {
                CallEvent::PeerNotFoundYet {
                    peer,
                    retry,
                    retry_in_ms,
                }
            }
            .into(),
        );
        true
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
            // Only a caller asks again. A callee's lookup of an unknown caller ends the call
            // at once (a spoofed Request must not hold a call slot); a real caller
            // retransmits its Request, which starts a new lookup.
            if self.calls[idx].role == CallRole::Caller && self.ask_again_later(now, peer, false) {
                return;
            }
            self.lookup_failed(idx, "peer not found");
            return;
        };
        let peer = self.calls[idx].peer;
        // A caller whose key check failed looked the callee up again and got the same key:
        // likely the callee's renewal is not in a block yet. Ask again a little later, keeping
        // the callee's Response (`saved_response`) to check with the key the next lookup
        // gives, rather than fail the call at once.
        let c = &self.calls[idx];
        if c.role == CallRole::Caller
            && c.saved_response.is_some()
            && c.peer_y() == Some(info.tx.out.y.as_slice())
            && self.ask_again_later(now, peer, true)
        {
            return;
        }
        self.not_found.remove(&peer);
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
                let (public_key, wallet) = (self.wallet.public_key(), &self.wallet);
                if let Some((to, payload)) =
                    c.request(me, public_key, |m| wallet.sign(m), &mut self.rng, now)
                {
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
            CallRole::Callee => match c.answer(self.wallet.dh(), me, &mut self.rng, now) {
                Ok((to, payload)) => {
                    let key = answered_key(&c.peer, &c.peer_nonce().unwrap_or_default());
                    self.events.push_back(
                        CallEvent::Active {
                            peer: hex(&c.peer),
                            role: "callee",
                            peer_addr: Some(to),
                        }
                        .into(),
                    );
                    self.send(to, payload);
                    if self.answered.insert(key) {
                        self.answered_order.push_back(key);
                        if self.answered_order.len() > ANSWERED_REMEMBERED
                            && let Some(old) = self.answered_order.pop_front()
                        {
                            self.answered.remove(&old);
                        }
                    }
                }
                Err(e) => {
                    c.hang_up();
                    self.events.push_back(
                        CallEvent::Failed {
                            peer: hex(&c.peer),
                            reason: e,
                        }
                        .into(),
                    );
                }
            },
        }
    }

    /// A Session Request refused before any lookup: counted per reason, reported on the 1st,
    /// 10th, 100th, ... of each reason.
    fn refuse_request(&mut self, reason: &'static str, caller: &HashAddr, from: SocketAddrV4) {
        let n = self.requests_refused.entry(reason).or_default();
        *n += 1;
        let count = *n;
        if power_of_ten(count) {
            self.events.push_back(
                CallEvent::Refused {
                    reason,
                    peer: hex(caller),
                    from: Some(from),
                    count,
                }
                .into(),
            );
        }
    }

    /// A Session Request (Figure 8 (c)). Nothing goes back to `from`: the request must carry
    /// the caller's valid signature (checked first, no lookup and no modexp before), the
    /// callee's lookup budget for callers is limited per source, per caller and in total, and
    /// the Response goes to the caller's **registered** endpoint once the chain confirms it.
    pub(super) fn on_session_request(&mut self, now: Time, from: SocketAddrV4, msg: &Message) {
        let Message::SessionRequest {
            caller,
            callee,
            nonce,
            ssrc,
            ephemeral,
            next,
            ..
        } = msg
        else {
            return;
        };
        let (caller, nonce, ssrc) = (*caller, *nonce, *ssrc);
        if *callee != self.wallet.hash_addr() {
            self.events.push_back(
                CallEvent::RequestRefused {
                    reason: "not for us",
                    from,
                }
                .into(),
            );
            return;
        }
        self.work.add(Op::Verify);
        if let Err(reason) = verify_session_request(msg) {
            return self.refuse_request(reason, &caller, from);
        }
        // A retransmitted request of a call we already know: our Response (if we sent one)
        // was lost, so send it again, to the caller's registered endpoint; otherwise we are
        // still looking the caller up.
        if let Some(c) = self.calls.iter().find(|c| {
            c.peer == caller && c.peer_nonce() == Some(nonce) && c.state != CallState::Ended
        }) {
            if let Some((to, resp)) = c.sent_response() {
                let payload = resp.to_vec();
                self.events.push_back(
                    CallEvent::ResponseResent {
                        peer: hex(&caller),
                        to,
                    }
                    .into(),
                );
                self.send(to, payload);
            }
            return;
        }
        if self.answered.contains(&answered_key(&caller, &nonce)) {
            return self.refuse_request("replayed", &caller, from);
        }
        if validate_public(ephemeral).is_err() || validate_public(next).is_err() {
            return self.refuse_request("bad_ephemeral", &caller, from);
        }
        let now_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
        if !self.request_sources.allow(*from.ip(), now_ms) {
            return self.refuse_request("source_rate_limited", &caller, from);
        }
        if !self.request_callers.allow(caller, now_ms) {
            return self.refuse_request("caller_rate_limited", &caller, from);
        }
        let incoming = self
            .calls
            .iter()
            .filter(|c| c.role == CallRole::Callee && matches!(c.state, CallState::LookingUp(_)))
            .count();
        if incoming >= MAX_INCOMING_LOOKUPS {
            return self.refuse_request("too_many_incoming_lookups", &caller, from);
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
            self.audio.clone(),
            now,
        );
        call.set_consent_timeout(self.consent_timeout);
        call.on_request(nonce, ssrc, ephemeral.clone(), next.clone());
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
        match c.on_response(self.wallet.dh(), me, msg, now) {
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
                c.on_timeout(now, me, have_address, &mut out, &mut evs);
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

    /// A Handover Request (Figure 9), from `from`: see [`Call::on_handover`].
    pub(super) fn on_handover(
        &mut self,
        now: Time,
        from: SocketAddrV4,
        sender: HashAddr,
        bytes: &[u8],
        msg: &Message,
    ) {
        let rng = &mut self.rng;
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
        match c.on_handover(now, from, bytes, msg, rng) {
            Ok(HandoverOutcome::Accepted(new_addr)) => self.events.push_back(
                CallEvent::HandoverAccepted {
                    peer: hex(&sender),
                    new_addr,
                    from,
                }
                .into(),
            ),
            Ok(HandoverOutcome::Duplicate) => {}
            Err(reason) => self.events.push_back(
                CallEvent::HandoverRejected {
                    peer: Some(hex(&sender)),
                    reason,
                    from,
                }
                .into(),
            ),
        }
        // A challenge may be due at once (the budget allows it now).
        self.calls_due(now);
    }

    /// A Path Challenge from the peer: answer it (to the peer's endpoint).
    pub(super) fn on_path_challenge(
        &mut self,
        now: Time,
        from: SocketAddrV4,
        sender: HashAddr,
        msg: &Message,
    ) {
        let me = self.wallet.hash_addr();
        let res = match self
            .calls
            .iter_mut()
            .find(|c| c.peer == sender && c.state == CallState::Active)
        {
            Some(c) => c.on_path_challenge(now, me, msg),
            None => Err("no such call"),
        };
        match res {
            Ok((to, payload)) => self.send(to, payload),
            Err(reason) => self.path_rejected(&sender, reason, from),
        }
    }

    /// A Path Response from the peer: the path it validates becomes the peer's endpoint.
    pub(super) fn on_path_response(
        &mut self,
        now: Time,
        from: SocketAddrV4,
        sender: HashAddr,
        msg: &Message,
    ) {
        let res = match self
            .calls
            .iter_mut()
            .find(|c| c.peer == sender && c.state == CallState::Active)
        {
            Some(c) => c.on_path_response(now, msg),
            None => Err("no such call"),
        };
        match res {
            Ok(addr) => self.events.push_back(
                CallEvent::PathValidated {
                    peer: hex(&sender),
                    addr,
                }
                .into(),
            ),
            Err(reason) => self.path_rejected(&sender, reason, from),
        }
    }

    fn path_rejected(&mut self, sender: &HashAddr, reason: &'static str, from: SocketAddrV4) {
        let known = reason != "no such call";
        let n = self.path_refused.entry(reason).or_default();
        *n += 1;
        if power_of_ten(*n) {
            self.events.push_back(
                CallEvent::PathRejected {
                    peer: known.then(|| hex(sender)),
                    reason,
                    from,
                }
                .into(),
            );
        }
    }

    pub(super) fn on_key_renewal(
        &mut self,
        now: Time,
        from: SocketAddrV4,
        sender: HashAddr,
        bytes: &[u8],
        msg: &Message,
    ) {
        let me = self.wallet.hash_addr();
        let rng = &mut self.rng;
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
        match c.on_renewal(now, bytes, msg, me, rng) {
            Ok(RenewalOutcome::Applied((to, payload))) => {
                self.events.push_back(
                    CallEvent::RekeyAccepted {
                        peer: hex(&sender),
                        epoch: c.epoch(),
                    }
                    .into(),
                );
                self.send(to, payload);
            }
            Ok(RenewalOutcome::Resent((to, payload))) => self.send(to, payload),
            // A copy of an older renewal: dropped without a word (it cannot be told from a
            // late retransmission).
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

    /// The peer's Key Renewal Reply: our renewal is confirmed.
    pub(super) fn on_key_renewal_reply(
        &mut self,
        now: Time,
        from: SocketAddrV4,
        sender: HashAddr,
        msg: &Message,
    ) {
        let mut evs = Vec::new();
        let res = match self
            .calls
            .iter_mut()
            .find(|c| c.peer == sender && c.state == CallState::Active)
        {
            Some(c) => c.on_renewal_reply(now, msg, &mut evs),
            None => Err("no such call"),
        };
        self.events.extend(evs);
        match res {
            Ok(_) | Err("replayed") => {}
            Err(reason) => self.events.push_back(
                CallEvent::RekeyRejected {
                    peer: Some(hex(&sender)),
                    reason,
                    from: Some(from),
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
            Some(c) => c.on_media(now, from, data, &mut evs),
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
        let me = self.wallet.hash_addr();
        let mut out = Vec::new();
        let mut evs = Vec::new();
        for c in &mut self.calls {
            c.on_timeout(now, me, have_address, &mut out, &mut evs);
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
                    // Too many queries pending: the call fails rather than wait for nothing.
                    None => self.lookup_failed(i, "lookup refused"),
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
        // A call that ended (or got its peer) while a retry was pending leaves nothing behind.
        let calls = &self.calls;
        self.not_found.retain(|peer, _| {
            calls
                .iter()
                .any(|c| c.peer == *peer && matches!(c.state, CallState::LookingUp(_)))
        });
    }
}

/// The key under which an answered request is remembered: caller ‖ nonce.
fn answered_key(caller: &HashAddr, nonce: &[u8; 16]) -> [u8; 48] {
    let mut k = [0u8; 48];
    k[..32].copy_from_slice(caller);
    k[32..].copy_from_slice(nonce);
    k
}
