//! One secure call of an end node (paper, Figures 8-10): session setup from a single
//! Query/Reply per side, AES-GCM protected RTP audio, the authenticated IP handover and key
//! renewal. The [`crate::en::EndNode`] owns the calls and routes messages to them.
//!
//! What this file adds to the paper (docs/security.md, "End node sessions"):
//!
//! - **Keys with forward secrecy, no extra round trip.** The Session Request carries the
//!   caller's ephemeral group-14 value, the Response the callee's; the root secret is
//!   HKDF over `ss` (static-static, the paper's K), `es` (caller ephemeral, callee static)
//!   and `ee` (both ephemerals, forgotten once the keys exist) ([`session_root`]). Each side
//!   also announces a *next* ephemeral; a key renewal combines a fresh ephemeral of the
//!   initiator with the peer's announced one ([`renewal_root`]), and the peer's Key Renewal
//!   Reply announces its replacement: fresh values on both sides at every epoch, and the
//!   initiator holds the new key before it sends, so a renewal still takes one T_II.
//! - **Media and control only to a registered endpoint or a validated path.** The callee
//!   answers at the caller's registered NAT endpoint (from the Tx it looked up), never at the
//!   request's source. A Handover Request names the new endpoint under its MAC; the peer
//!   validates it with a [`Message::PathChallenge`] only the mover can answer (RFC 9000
//!   section 8.2, RFC 8046) and, until then, sends there at most [`AMPLIFICATION_FACTOR`]
//!   times the bytes it received from it (RFC 9000 section 8.1).
//! - **Consent freshness** (RFC 7675): a call that has received no authenticated packet for
//!   its consent timeout (default [`DEFAULT_CONSENT_TIMEOUT`]) stops its media and ends.

use crate::Time;
use crate::call_events::CallEvent;
use crate::dh::{DhSecret, validate_public};
use crate::event::Event;
use crate::session::Out;
use crate::session::keys::{SessionKeys, derive, mac, renewal_root, session_root, verify_mac};
use crate::session::media::{MediaEvents, MediaSession};
use crate::session::retransmit::{CONTROL_RTO, CONTROL_TRIES, PendingControl};
use crate::session::srtp::KeyUsed;
use crate::util::short_hex;
use crate::work::{Op, Work};
use binfm_stack::wire::binfm::{CHALLENGE_LEN, Message, mac_input, signing_input};
use binfm_stack::wire::toall::HashAddr;
use ed25519_dalek::{Signature, VerifyingKey};
use std::net::SocketAddrV4;
use std::time::Duration;

/// The media events of a BINFM call.
const MEDIA_EVENTS: MediaEvents = MediaEvents {
    first_frame: |peer, index| CallEvent::FirstFrame { peer, index }.into(),
    resumed: |peer, gap_ms, index| {
        CallEvent::MediaResumed {
            peer,
            gap_ms,
            index,
        }
        .into()
    },
    refused: |peer, reason| CallEvent::MediaRefused { peer, reason }.into(),
};

/// Consent freshness (RFC 7675 section 5.1): with no authenticated packet from the peer for
/// this long, a call stops sending media and ends.
pub const DEFAULT_CONSENT_TIMEOUT: Duration = Duration::from_secs(30);
/// The callee's consent before the caller's first authenticated packet: as long as the caller
/// keeps retransmitting its Request (so a replayed Request costs the caller's registered
/// endpoint at most this much audio).
pub const INITIAL_CONSENT: Duration =
    Duration::from_millis(CONTROL_RTO.as_millis() as u64 * CONTROL_TRIES as u64);
/// Anti-amplification limit on an unvalidated path (RFC 9000 section 8.1): bytes sent to it
/// at most this many times the bytes received from it.
pub const AMPLIFICATION_FACTOR: u64 = 3;

/// Which end of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallRole {
    /// Sent the Session Request.
    Caller,
    /// Answered it.
    Callee,
}

/// Where a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// Waiting for the Reply about the peer (request id).
    LookingUp(u32),
    /// Caller: Session Request sent, waiting for the Response.
    Requesting,
    /// Keys agreed; audio flows.
    Active,
    /// Hung up or failed.
    Ended,
}

/// A key renewal this side started: the new keys, kept until the peer's Reply confirms them.
#[derive(Debug)]
struct Renewal {
    keys: SessionKeys,
    root: [u8; 32],
    counter: u64,
    /// Already sending under the new keys (the peer was seen using them).
    switched: bool,
    /// The peer's announced next value this renewal used (given back if it is dropped).
    peer_next: Vec<u8>,
}

/// One candidate endpoint of the peer after its Handover Request, until validated.
#[derive(Debug, Clone)]
struct Candidate {
    addr: SocketAddrV4,
    data: [u8; CHALLENGE_LEN],
    received: u64,
    sent: u64,
    tries: u32,
    next_try: Time,
}

impl Candidate {
    fn new(addr: SocketAddrV4, data: [u8; CHALLENGE_LEN], received: u64, now: Time) -> Self {
        Candidate {
            addr,
            data,
            received,
            sent: 0,
            tries: 0,
            next_try: now,
        }
    }

    /// Whether `len` more bytes stay within the anti-amplification budget.
    fn may_send(&self, len: usize) -> bool {
        self.sent.saturating_add(len as u64) <= self.received.saturating_mul(AMPLIFICATION_FACTOR)
    }
}

/// What an accepted Handover Request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoverOutcome {
    /// A new handover: the MAC-covered endpoint is now being validated.
    Accepted(SocketAddrV4),
    /// An exact copy of the handover already accepted (the mover's retransmission, or a copy
    /// raced ahead of it): nothing changes; the bytes count for the path's budget if they
    /// came from a candidate endpoint.
    Duplicate,
}

/// What an authentic Key Renewal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewalOutcome {
    /// Applied: the next epoch's keys are in use; send this Key Renewal Reply.
    Applied(Out),
    /// A copy of the renewal applied last: our Reply was lost, send it again.
    Resent(Out),
}

/// One call.
#[derive(Debug)]
pub struct Call {
    /// Callee: the Session Response we sent (resent if the Request is retransmitted).
    response: Option<Vec<u8>>,
    /// The peer's hash address.
    pub peer: HashAddr,
    /// Our end.
    pub role: CallRole,
    /// State.
    pub state: CallState,
    my_nonce: [u8; 16],
    peer_nonce: Option<[u8; 16]>,
    /// Where control and media for the peer go: its registered NAT endpoint (from the Tx we
    /// looked up), or a path validated after its handover.
    pub peer_addr: Option<SocketAddrV4>,
    peer_y: Option<Vec<u8>>,
    /// Our ephemeral of the setup, forgotten once the session keys exist.
    eph: Option<DhSecret>,
    /// The peer's ephemeral of the setup (callee: from the Request).
    peer_eph: Option<Vec<u8>>,
    /// Our announced next ephemeral: used once, by the next renewal the peer starts.
    my_next: Option<DhSecret>,
    /// The peer's announced next ephemeral: used once, by the next renewal we start.
    peer_next: Option<Vec<u8>>,
    /// The current epoch's root secret.
    root: Option<[u8; 32]>,
    control: Option<[u8; 32]>,
    /// After we applied the peer's renewal: the previous control key, still accepted until
    /// the peer is seen using the new keys (its control messages may cross our Reply).
    prev_control: Option<[u8; 32]>,
    epoch: u32,
    send_counter: u64,
    recv_counter: u64,
    pending: Option<PendingControl>,
    renewal: Option<Renewal>,
    /// The last Key Renewal we applied (its bytes) and our Reply to it.
    reply: Option<(Vec<u8>, Vec<u8>)>,
    /// The last Handover Request accepted (its bytes), to know a copy of it.
    last_handover: Option<Vec<u8>>,
    /// Endpoints being validated after the peer's handover (the MAC-covered one first).
    candidates: Vec<Candidate>,
    /// When the last authenticated packet came from the peer (or the call became active).
    last_auth: Time,
    /// Whether anything authenticated came from the peer since the call became active.
    heard_peer: bool,
    consent_timeout: Duration,
    /// When the call was started (caller) or the request arrived (callee).
    pub started_at: Time,
    /// The audio, both ways.
    pub media: MediaSession,
    /// Handover/rekey/path messages refused (bad MAC, replayed, unknown call).
    pub control_refused: u64,
    /// Media frames not sent because the peer's new path was not validated and its
    /// anti-amplification budget was spent.
    pub frames_held: u64,
    /// Handover Requests that were exact copies of the one accepted.
    pub handover_duplicates: u64,
    /// A Session Response whose key confirmation failed, kept while the peer is looked up
    /// again (it may have renewed its key).
    pub saved_response: Option<Message>,
    /// DH and signing work done since the end node last took it ([`Call::take_work`]).
    work: Work,
}

/// Checks a Session Request's signature: SHA-256 of the carried public key must be the
/// caller's hash address, the key must not be weak, and the ed25519 signature must verify
/// over [`signing_input`]. Costs one signature check; needs no lookup and no modexp.
pub fn verify_session_request(msg: &Message) -> Result<(), &'static str> {
    let Message::SessionRequest {
        caller,
        public_key,
        signature,
        ..
    } = msg
    else {
        return Err("not a session request");
    };
    if crate::wallet::hash_addr_of(public_key) != *caller {
        return Err("key_not_caller");
    }
    let key = VerifyingKey::from_bytes(public_key).map_err(|_| "bad_public_key")?;
    if key.is_weak() {
        return Err("bad_public_key");
    }
    key.verify_strict(&signing_input(msg), &Signature::from_bytes(signature))
        .map_err(|_| "bad_signature")
}

fn fresh_data<R: rand::Rng + ?Sized>(rng: &mut R) -> [u8; CHALLENGE_LEN] {
    let mut d = [0u8; CHALLENGE_LEN];
    rng.fill_bytes(&mut d);
    d
}

impl Call {
    /// A new call. `audio` is what this side sends (a tone frequency converts).
    pub fn new(
        peer: HashAddr,
        role: CallRole,
        my_nonce: [u8; 16],
        my_ssrc: u32,
        audio: impl Into<crate::session::audio::AudioSource>,
        now: Time,
    ) -> Self {
        Call {
            response: None,
            peer,
            role,
            state: CallState::Ended,
            my_nonce,
            peer_nonce: None,
            peer_addr: None,
            peer_y: None,
            eph: None,
            peer_eph: None,
            my_next: None,
            peer_next: None,
            root: None,
            control: None,
            prev_control: None,
            epoch: 0,
            send_counter: 0,
            recv_counter: 0,
            pending: None,
            renewal: None,
            reply: None,
            last_handover: None,
            candidates: Vec::new(),
            last_auth: now,
            heard_peer: false,
            consent_timeout: DEFAULT_CONSENT_TIMEOUT,
            started_at: now,
            media: MediaSession::new(my_ssrc, audio, MEDIA_EVENTS),
            control_refused: 0,
            frames_held: 0,
            handover_duplicates: 0,
            saved_response: None,
            work: Work::NONE,
        }
    }

    /// The DH and signing work done since the last call of this (see [`crate::work`]).
    pub fn take_work(&mut self) -> Work {
        self.work.take()
    }

    /// Sets the consent timeout (RFC 7675; default [`DEFAULT_CONSENT_TIMEOUT`]).
    pub fn set_consent_timeout(&mut self, t: Duration) {
        self.consent_timeout = t;
    }

    /// Our nonce (the caller's is the one in the Session Request).
    pub fn my_nonce(&self) -> [u8; 16] {
        self.my_nonce
    }

    /// The peer nonce, once known.
    pub fn peer_nonce(&self) -> Option<[u8; 16]> {
        self.peer_nonce
    }

    /// Key epoch (0 at setup, +1 per renewal).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Fingerprint of the key we send media with (see [`crate::session::keys::DirectionKey::fingerprint`]).
    pub fn send_key_id(&self) -> Option<[u8; 4]> {
        self.media.send_key_id()
    }

    /// Whether the peer's new path is still being validated.
    pub fn validating_path(&self) -> bool {
        !self.candidates.is_empty()
    }

    /// Whether we still hold a secret that could give this session's current keys back:
    /// the setup ephemeral is kept only until the keys are derived.
    pub fn holds_setup_ephemeral(&self) -> bool {
        self.eph.is_some()
    }

    /// Records what the peer registered (from a verified Reply).
    pub fn set_peer_registration(&mut self, y: Vec<u8>, nat: SocketAddrV4) {
        self.peer_y = Some(y);
        if self.peer_addr.is_none() {
            self.peer_addr = Some(nat);
        }
    }

    /// The peer's DH public value as registered.
    pub fn peer_y(&self) -> Option<&[u8]> {
        self.peer_y.as_deref()
    }

    /// Caller side: the signed Session Request to send (and retransmit), with a fresh
    /// ephemeral and a fresh next ephemeral. `sign` signs with our wallet key.
    pub fn request<R: rand::CryptoRng + ?Sized>(
        &mut self,
        me: HashAddr,
        public_key: [u8; 32],
        sign: impl FnOnce(&[u8]) -> [u8; 64],
        rng: &mut R,
        now: Time,
    ) -> Option<Out> {
        let to = self.peer_addr?;
        let eph = DhSecret::generate(rng);
        let next = DhSecret::generate(rng);
        self.work.add_n(Op::DhKeygen, 2);
        let mut msg = Message::SessionRequest {
            caller: me,
            callee: self.peer,
            nonce: self.my_nonce,
            ssrc: self.media.ssrc(),
            ephemeral: eph.public(),
            next: next.public(),
            public_key,
            signature: [0; 64],
        };
        let sig = sign(&signing_input(&msg));
        self.work.add(Op::Sign);
        if let Message::SessionRequest { signature, .. } = &mut msg {
            *signature = sig;
        }
        self.eph = Some(eph);
        self.my_next = Some(next);
        let bytes = msg.to_bytes();
        self.state = CallState::Requesting;
        self.pending = Some(PendingControl::new(bytes.clone(), "session_request", now));
        Some((to, bytes))
    }

    /// Callee side: a verified request's nonce, SSRC and the caller's two ephemerals
    /// (checked `1 < Y < p-1` by the caller of this function). Where the request came from is
    /// not kept: we answer at the caller's registered endpoint.
    pub fn on_request(&mut self, nonce: [u8; 16], ssrc: u32, ephemeral: Vec<u8>, next: Vec<u8>) {
        self.peer_nonce = Some(nonce);
        self.peer_eph = Some(ephemeral);
        self.peer_next = Some(next);
        self.media.set_peer_ssrc(ssrc);
    }

    fn names(&self, me: &HashAddr) -> (HashAddr, HashAddr, [u8; 16], [u8; 16]) {
        match self.role {
            CallRole::Caller => (
                *me,
                self.peer,
                self.my_nonce,
                self.peer_nonce.unwrap_or_default(),
            ),
            CallRole::Callee => (
                self.peer,
                *me,
                self.peer_nonce.unwrap_or_default(),
                self.my_nonce,
            ),
        }
    }

    fn keys_for(&self, root: &[u8; 32], me: &HashAddr, epoch: u32) -> SessionKeys {
        let (caller, callee, cn, en) = self.names(me);
        derive(
            root,
            &caller,
            &callee,
            &cn,
            &en,
            epoch,
            self.role == CallRole::Caller,
        )
    }

    /// Installs the epoch-0 keys from the session's root secret.
    fn install(&mut self, root: [u8; 32], me: &HashAddr) {
        let keys = self.keys_for(&root, me, self.epoch);
        self.root = Some(root);
        self.control = Some(keys.control);
        self.media.install_keys(keys.send, keys.recv);
    }

    /// Callee side: derives the keys from our static secret `x`, the caller's registered Y
    /// and its ephemeral, and a fresh ephemeral of ours (forgotten at once); returns the
    /// Session Response, to the caller's registered endpoint.
    pub fn answer<R: rand::CryptoRng + ?Sized>(
        &mut self,
        x: &DhSecret,
        me: HashAddr,
        rng: &mut R,
        now: Time,
    ) -> Result<Out, String> {
        let to = self.peer_addr.ok_or("no registered endpoint")?;
        let peer_y = self.peer_y.as_deref().ok_or("no registration")?;
        let peer_eph = self.peer_eph.as_deref().ok_or("no ephemeral")?;
        // Counted before the modexps: a failing one costs its time too.
        self.work.add_n(Op::DhAgree, 3);
        self.work.add_n(Op::DhKeygen, 2);
        let ss = x.agree(peer_y).map_err(|e| e.to_string())?;
        let es = x.agree(peer_eph).map_err(|e| e.to_string())?;
        let eph = DhSecret::generate(rng);
        let ee = eph.agree(peer_eph).map_err(|e| e.to_string())?;
        let next = DhSecret::generate(rng);
        self.install(session_root(&ss, &es, &ee), &me);
        let control = self.control.ok_or("no keys")?;
        let mut msg = Message::SessionResponse {
            caller: self.peer,
            callee: me,
            nonce: self.my_nonce,
            ssrc: self.media.ssrc(),
            ephemeral: eph.public(),
            next: next.public(),
            confirm: [0; 16],
        };
        // `eph` goes out of scope here: only the root (and the keys) remain.
        let tag = mac(&control, &mac_input(&msg));
        if let Message::SessionResponse { confirm, .. } = &mut msg {
            *confirm = tag;
        }
        self.my_next = Some(next);
        self.peer_eph = None;
        self.activate(now, false);
        let bytes = msg.to_bytes();
        self.response = Some(bytes.clone());
        Ok((to, bytes))
    }

    /// Callee side: the Session Response sent, to answer a retransmitted Request (the first
    /// Response was lost), and where it goes (the caller's registered endpoint).
    pub fn sent_response(&self) -> Option<(SocketAddrV4, &[u8])> {
        Some((self.peer_addr?, self.response.as_deref()?))
    }

    /// Caller side: the Response arrived. Derives the keys from our static secret `x`, our
    /// setup ephemeral, the callee's registered Y and its ephemeral, and checks the key
    /// confirmation; on success the ephemeral is forgotten, the call is active and audio
    /// starts at once.
    pub fn on_response(
        &mut self,
        x: &DhSecret,
        me: HashAddr,
        resp: &Message,
        now: Time,
    ) -> Result<(), &'static str> {
        let Message::SessionResponse {
            nonce,
            ssrc,
            ephemeral,
            next,
            confirm,
            ..
        } = resp
        else {
            return Err("not a response");
        };
        if validate_public(ephemeral).is_err() || validate_public(next).is_err() {
            return Err("bad ephemeral");
        }
        let (Some(eph), Some(peer_y)) = (&self.eph, self.peer_y.as_deref()) else {
            return Err("no keys");
        };
        self.work.add_n(Op::DhAgree, 3);
        let ss = x.agree(peer_y).map_err(|_| "bad registered Y")?;
        let es = eph.agree(peer_y).map_err(|_| "bad registered Y")?;
        let ee = eph.agree(ephemeral).map_err(|_| "bad ephemeral")?;
        self.peer_nonce = Some(*nonce);
        self.media.set_peer_ssrc(*ssrc);
        self.install(session_root(&ss, &es, &ee), &me);
        let Some(control) = self.control else {
            return Err("no keys");
        };
        if !verify_mac(&control, &mac_input(resp), confirm) {
            self.control = None;
            self.root = None;
            self.media.drop_keys();
            return Err("key confirmation failed");
        }
        self.eph = None;
        self.peer_next = Some(next.clone());
        self.pending = None;
        self.activate(now, true);
        Ok(())
    }

    fn activate(&mut self, now: Time, heard_peer: bool) {
        self.state = CallState::Active;
        self.last_auth = now;
        self.heard_peer = heard_peer;
        self.media.start(now);
    }

    /// Checks a control message's tag: under the current control key, or during a renewal
    /// under the key the peer may still (or already) use: the previous one after we applied
    /// its renewal, the next one while ours waits for its Reply.
    fn verify_control(&self, control: &[u8; 32], input: &[u8], tag: &[u8; 16]) -> bool {
        verify_mac(control, input, tag)
            || self
                .prev_control
                .is_some_and(|k| verify_mac(&k, input, tag))
            || self
                .renewal
                .as_ref()
                .is_some_and(|r| verify_mac(&r.keys.control, input, tag))
    }

    /// An authenticated packet from the peer: consent is fresh.
    fn heard(&mut self, now: Time) {
        self.last_auth = self.last_auth.max(now);
        self.heard_peer = true;
    }

    /// When consent runs out without another authenticated packet.
    fn consent_deadline(&self) -> Time {
        let t = if self.heard_peer {
            self.consent_timeout
        } else {
            self.consent_timeout.min(INITIAL_CONSENT)
        };
        self.last_auth + t
    }

    /// Ends the call.
    pub fn hang_up(&mut self) {
        self.state = CallState::Ended;
        self.media.stop();
        self.pending = None;
        self.candidates.clear();
        // Forget every secret of the session (the media keys too: an ended call is kept only
        // for its statistics).
        self.media.drop_keys();
        self.eph = None;
        self.my_next = None;
        self.root = None;
        self.control = None;
        self.prev_control = None;
        self.renewal = None;
    }

    /// Media frames due by `now` (to the peer's registered or validated endpoint, or within
    /// the budget of the path being validated), path challenges and control
    /// retransmissions; ends the call when consent has run out. `have_address` is false while
    /// the EN has no lease (moving).
    pub fn on_timeout(
        &mut self,
        now: Time,
        me: HashAddr,
        have_address: bool,
        out: &mut Vec<Out>,
        events: &mut Vec<Event>,
    ) {
        if self.state == CallState::Active && now > self.consent_deadline() {
            let idle_ms =
                u64::try_from(now.saturating_sub(self.last_auth).as_millis()).unwrap_or(u64::MAX);
            self.hang_up();
            events.push(
                CallEvent::ConsentExpired {
                    peer: short_hex(&self.peer),
                    idle_ms,
                    heard_peer: self.heard_peer,
                }
                .into(),
            );
            return;
        }
        if let Some(p) = &mut self.pending
            && p.on_timeout(now, self.peer_addr, have_address, out)
        {
            events.push(
                CallEvent::ControlGaveUp {
                    what: p.what(),
                    peer: short_hex(&self.peer),
                }
                .into(),
            );
            self.pending = None;
        }
        if self.state != CallState::Active {
            return;
        }
        if have_address {
            self.challenges_due(now, me, out);
        }
        if self.candidates.is_empty() {
            self.media.send_due(now, self.peer_addr, have_address, out);
            return;
        }
        // The peer's new path is not validated yet: media goes there within its budget only.
        let to = self.candidates[0].addr;
        let mut frames = Vec::new();
        self.media
            .send_due(now, Some(to), have_address, &mut frames);
        for (to, packet) in frames {
            let c = &mut self.candidates[0];
            if c.may_send(packet.len()) {
                c.sent += packet.len() as u64;
                out.push((to, packet));
            } else {
                self.media.frames_sent = self.media.frames_sent.saturating_sub(1);
                self.frames_held += 1;
            }
        }
    }

    /// Path challenges due, within each candidate's budget.
    fn challenges_due(&mut self, now: Time, me: HashAddr, out: &mut Vec<Out>) {
        let Some(control) = self.control else { return };
        for c in &mut self.candidates {
            if c.tries >= CONTROL_TRIES || c.next_try > now {
                continue;
            }
            let mut msg = Message::PathChallenge {
                sender: me,
                data: c.data,
                mac: [0; 16],
            };
            let tag = mac(&control, &mac_input(&msg));
            if let Message::PathChallenge { mac: m, .. } = &mut msg {
                *m = tag;
            }
            let bytes = msg.to_bytes();
            if !c.may_send(bytes.len()) {
                continue;
            }
            c.sent += bytes.len() as u64;
            c.tries += 1;
            c.next_try = now + CONTROL_RTO;
            out.push((c.addr, bytes));
        }
    }

    /// Bytes from `from`: they raise the budget of a candidate path at that endpoint.
    fn credit(&mut self, from: SocketAddrV4, len: usize) {
        if let Some(c) = self.candidates.iter_mut().find(|c| c.addr == from) {
            c.received = c.received.saturating_add(len as u64);
        }
    }

    /// The next moment the call must act.
    pub fn poll_timeout(&self) -> Option<Time> {
        let active = self.state == CallState::Active;
        let media = self.media.next_timeout(active, self.pending.as_ref());
        let consent = active.then(|| self.consent_deadline() + Duration::from_millis(1));
        let challenge = self
            .candidates
            .iter()
            .filter(|c| c.tries < CONTROL_TRIES && c.may_send(68))
            .map(|c| c.next_try)
            .min();
        [media, consent, challenge].into_iter().flatten().min()
    }

    /// A media packet from the peer, from `from`. Media under the next key completes our key
    /// renewal. An authentic frame refreshes consent; from a candidate endpoint it raises
    /// that path's budget.
    pub fn on_media(
        &mut self,
        now: Time,
        from: SocketAddrV4,
        packet: &[u8],
        events: &mut Vec<Event>,
    ) {
        let Some(rx) = self.media.receive(now, packet, &self.peer, events) else {
            return;
        };
        self.heard(now);
        self.credit(from, packet.len());
        // Media from the peer after our handover: the peer switched; stop repeating.
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.what() == "handover_request")
        {
            self.pending = None;
        }
        if rx.key == KeyUsed::Next {
            // The peer sends under the renewed keys: it holds them.
            self.prev_control = None;
            self.switch_to_renewal(Some(rx.index), events);
        }
    }

    /// Our renewal's keys are in use both ways now (the peer sends under them, or its Reply
    /// confirmed them).
    fn switch_to_renewal(&mut self, index: Option<u64>, events: &mut Vec<Event>) {
        let Some(r) = &mut self.renewal else { return };
        if r.switched {
            return;
        }
        r.switched = true;
        self.media.set_send_key(r.keys.send.clone());
        self.control = Some(r.keys.control);
        self.root = Some(r.root);
        self.epoch += 1;
        events.push(
            CallEvent::RekeyComplete {
                peer: short_hex(&self.peer),
                epoch: self.epoch,
                index,
            }
            .into(),
        );
    }

    /// We moved: tell the peer our new addresses, authenticated with the session key.
    pub fn handover(
        &mut self,
        me: HashAddr,
        private: SocketAddrV4,
        nat: SocketAddrV4,
        now: Time,
    ) -> Option<Out> {
        let control = self.control?;
        let to = self.peer_addr?;
        self.send_counter += 1;
        let mut msg = Message::HandoverRequest {
            sender: me,
            counter: self.send_counter,
            private,
            nat,
            mac: [0; 16],
        };
        let tag = mac(&control, &mac_input(&msg));
        if let Message::HandoverRequest { mac: m, .. } = &mut msg {
            *m = tag;
        }
        let bytes = msg.to_bytes();
        self.pending = Some(PendingControl::new(bytes.clone(), "handover_request", now));
        Some((to, bytes))
    }

    /// The peer moved. Accepted only with a valid MAC and a fresh counter (or as an exact
    /// copy of the one accepted). The new endpoint is the MAC-covered `nat`, never the
    /// datagram's source: both are challenged (the source only when it differs, since the
    /// mover's NAT may not have given it its H16 port), and media goes to `nat` within the
    /// anti-amplification budget until one answers; the first validated becomes the peer's
    /// endpoint.
    pub fn on_handover<R: rand::Rng + ?Sized>(
        &mut self,
        now: Time,
        from: SocketAddrV4,
        bytes: &[u8],
        msg: &Message,
        rng: &mut R,
    ) -> Result<HandoverOutcome, &'static str> {
        let Message::HandoverRequest {
            counter,
            nat,
            mac: tag,
            ..
        } = msg
        else {
            return Err("not a handover");
        };
        let Some(control) = self.control else {
            return Err("no session key");
        };
        if !self.verify_control(&control, &mac_input(msg), tag) {
            self.control_refused += 1;
            return Err("bad_mac");
        }
        if self.last_handover.as_deref() == Some(bytes) {
            self.heard(now);
            self.credit(from, bytes.len());
            self.handover_duplicates += 1;
            return Ok(HandoverOutcome::Duplicate);
        }
        if *counter <= self.recv_counter {
            self.control_refused += 1;
            return Err("replayed");
        }
        self.recv_counter = *counter;
        self.last_handover = Some(bytes.to_vec());
        self.heard(now);
        let len = bytes.len() as u64;
        self.candidates.clear();
        self.candidates.push(Candidate::new(
            *nat,
            fresh_data(rng),
            if from == *nat { len } else { 0 },
            now,
        ));
        if from != *nat {
            self.candidates
                .push(Candidate::new(from, fresh_data(rng), len, now));
        }
        Ok(HandoverOutcome::Accepted(*nat))
    }

    /// The peer checks our new path: answer (to the peer's endpoint) if the challenge is
    /// authentic. It also shows the peer got our Handover Request.
    pub fn on_path_challenge(
        &mut self,
        now: Time,
        me: HashAddr,
        msg: &Message,
    ) -> Result<Out, &'static str> {
        let Message::PathChallenge { data, mac: tag, .. } = msg else {
            return Err("not a path challenge");
        };
        let Some(control) = self.control else {
            return Err("no session key");
        };
        if !self.verify_control(&control, &mac_input(msg), tag) {
            self.control_refused += 1;
            return Err("bad_mac");
        }
        let to = self.peer_addr.ok_or("no peer endpoint")?;
        self.heard(now);
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.what() == "handover_request")
        {
            self.pending = None;
        }
        let mut resp = Message::PathResponse {
            sender: me,
            data: *data,
            mac: [0; 16],
        };
        let t = mac(&control, &mac_input(&resp));
        if let Message::PathResponse { mac: m, .. } = &mut resp {
            *m = t;
        }
        Ok((to, resp.to_bytes()))
    }

    /// The answer to one of our path challenges: its endpoint is validated and becomes the
    /// peer's. Returns that endpoint.
    pub fn on_path_response(
        &mut self,
        now: Time,
        msg: &Message,
    ) -> Result<SocketAddrV4, &'static str> {
        let Message::PathResponse { data, mac: tag, .. } = msg else {
            return Err("not a path response");
        };
        let Some(control) = self.control else {
            return Err("no session key");
        };
        if !self.verify_control(&control, &mac_input(msg), tag) {
            self.control_refused += 1;
            return Err("bad_mac");
        }
        let Some(c) = self.candidates.iter().find(|c| &c.data == data) else {
            // A late answer to a path already validated, or nothing we asked.
            return Err("unknown_challenge");
        };
        let addr = c.addr;
        self.heard(now);
        self.peer_addr = Some(addr);
        self.candidates.clear();
        Ok(addr)
    }

    /// Starts a key renewal: a fresh ephemeral of ours with the peer's announced next one
    /// gives the next epoch's root; the Key Renewal carries our ephemeral's public value and
    /// is MACed with the current control key. We keep sending under the old key until the
    /// peer is seen using the new one, or its Reply arrives (so no frame is lost).
    pub fn renew<R: rand::CryptoRng + ?Sized>(
        &mut self,
        me: HashAddr,
        rng: &mut R,
        now: Time,
    ) -> Result<Out, &'static str> {
        let control = self.control.ok_or("no session key")?;
        let root = self.root.ok_or("no session key")?;
        let to = self.peer_addr.ok_or("no peer endpoint")?;
        if self.renewal.is_some() {
            return Err("renewal in progress");
        }
        let peer_next = self.peer_next.take().ok_or("no next value from the peer")?;
        let fresh = DhSecret::generate(rng);
        self.work.add(Op::DhKeygen);
        self.work.add(Op::DhAgree);
        let Ok(dh) = fresh.agree(&peer_next) else {
            return Err("bad next value");
        };
        // `fresh` is forgotten when this function returns: only the new root remains.
        let new_root = renewal_root(&root, &dh);
        let keys = self.keys_for(&new_root, &me, self.epoch + 1);
        self.media.expect_next_key(keys.recv.clone());
        self.send_counter += 1;
        self.renewal = Some(Renewal {
            keys,
            root: new_root,
            counter: self.send_counter,
            switched: false,
            peer_next,
        });
        let mut msg = Message::KeyRenewal {
            sender: me,
            counter: self.send_counter,
            y: fresh.public(),
            mac: [0; 16],
        };
        let tag = mac(&control, &mac_input(&msg));
        if let Message::KeyRenewal { mac: m, .. } = &mut msg {
            *m = tag;
        }
        let bytes = msg.to_bytes();
        self.pending = Some(PendingControl::new(bytes.clone(), "key_renewal", now));
        Ok((to, bytes))
    }

    /// The peer renewed the key: check it, combine its fresh ephemeral with our announced
    /// next one (then forgotten), switch our sending key at once (the peer already accepts
    /// it), expect the new key on receive, and answer with a Reply that announces our next
    /// ephemeral, MACed with the **new** control key (key confirmation).
    pub fn on_renewal<R: rand::CryptoRng + ?Sized>(
        &mut self,
        now: Time,
        bytes: &[u8],
        msg: &Message,
        me: HashAddr,
        rng: &mut R,
    ) -> Result<RenewalOutcome, &'static str> {
        let Message::KeyRenewal {
            counter,
            y,
            mac: tag,
            ..
        } = msg
        else {
            return Err("not a renewal");
        };
        let Some(control) = self.control else {
            return Err("no session key");
        };
        if *counter <= self.recv_counter {
            // A retransmission of the renewal we applied last: our Reply was lost. Its MAC is
            // under the previous epoch's key, which we no longer hold, so only an exact copy
            // of the last one counts; anything else is a replay and changes nothing.
            if let (Some((last, reply)), Some(to)) = (&self.reply, self.peer_addr)
                && last.as_slice() == bytes
            {
                return Ok(RenewalOutcome::Resent((to, reply.clone())));
            }
            return Err("replayed");
        }
        if !self.verify_control(&control, &mac_input(msg), tag) {
            self.control_refused += 1;
            return Err("bad_mac");
        }
        if self.renewal.is_some() {
            // Both ends started a renewal at once: the caller's wins. The callee drops its
            // own (never used) and gets back the peer's next value it would have used.
            if self.role == CallRole::Caller {
                return Err("crossed");
            }
            if let Some(r) = self.renewal.take() {
                self.peer_next = Some(r.peer_next);
            }
            if self
                .pending
                .as_ref()
                .is_some_and(|p| p.what() == "key_renewal")
            {
                self.pending = None;
            }
        }
        if validate_public(y).is_err() {
            self.control_refused += 1;
            return Err("bad_y");
        }
        let root = self.root.ok_or("no session key")?;
        let Some(my_next) = self.my_next.take() else {
            return Err("no next value");
        };
        self.work.add(Op::DhAgree);
        let Ok(dh) = my_next.agree(y) else {
            self.control_refused += 1;
            return Err("bad_y");
        };
        let to = self.peer_addr.ok_or("no peer endpoint")?;
        self.recv_counter = *counter;
        self.heard(now);
        self.epoch += 1;
        let new_root = renewal_root(&root, &dh);
        let keys = self.keys_for(&new_root, &me, self.epoch);
        self.media.set_send_key(keys.send.clone());
        self.media.expect_next_key(keys.recv.clone());
        self.prev_control = self.control.replace(keys.control);
        self.root = Some(new_root);
        let next = DhSecret::generate(rng);
        self.work.add(Op::DhKeygen);
        let mut reply = Message::KeyRenewalReply {
            sender: me,
            counter: *counter,
            y: next.public(),
            mac: [0; 16],
        };
        self.my_next = Some(next);
        let t = mac(&keys.control, &mac_input(&reply));
        if let Message::KeyRenewalReply { mac: m, .. } = &mut reply {
            *m = t;
        }
        let reply = reply.to_bytes();
        self.reply = Some((bytes.to_vec(), reply.clone()));
        Ok(RenewalOutcome::Applied((to, reply)))
    }

    /// The peer's Reply to our renewal: checked with the new epoch's control key; we switch to
    /// the new keys (if not yet) and keep the peer's next ephemeral for the next renewal.
    pub fn on_renewal_reply(
        &mut self,
        now: Time,
        msg: &Message,
        events: &mut Vec<Event>,
    ) -> Result<u32, &'static str> {
        let Message::KeyRenewalReply {
            counter,
            y,
            mac: tag,
            ..
        } = msg
        else {
            return Err("not a renewal reply");
        };
        let Some(r) = &self.renewal else {
            return Err("no renewal pending");
        };
        if r.counter != *counter {
            return Err("replayed");
        }
        if !verify_mac(&r.keys.control, &mac_input(msg), tag) {
            self.control_refused += 1;
            return Err("bad_mac");
        }
        if validate_public(y).is_err() {
            self.control_refused += 1;
            return Err("bad_y");
        }
        self.heard(now);
        self.switch_to_renewal(None, events);
        self.renewal = None;
        self.pending = None;
        self.peer_next = Some(y.clone());
        Ok(self.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dh::P_HEX;
    use crate::session::srtp::SrtpReceiver;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::net::Ipv4Addr;

    fn addr(last: u8) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, last), 7401)
    }

    /// Both ends of one call with their long-term secrets, and the setup's datagrams.
    struct Pair {
        a: Call,
        b: Call,
        xa: DhSecret,
        xb: DhSecret,
        /// A's RNG as it was before the Session Request (regenerates A's ephemeral).
        rng_a_before: ChaCha8Rng,
        request: Vec<u8>,
        response: Vec<u8>,
    }

    const A_ADDR: HashAddr = [0xaa; 32];
    const B_ADDR: HashAddr = [0xbb; 32];

    /// A caller (A) and a callee (B) with an established session; `seed` drives the
    /// ephemerals and nonces (the long-term keys are the same for every seed).
    fn pair_seeded(seed: u64) -> Pair {
        let mut long = ChaCha8Rng::seed_from_u64(1);
        let (xa, xb) = (DhSecret::generate(&mut long), DhSecret::generate(&mut long));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let now = Time::ZERO;
        let mut na = [0u8; 16];
        rng.fill_bytes(&mut na);
        let mut a = Call::new(B_ADDR, CallRole::Caller, na, 0x1111_0000, 440.0, now);
        a.set_peer_registration(xb.public(), addr(2));
        let rng_a_before = rng.clone();
        let (_, request) = a
            .request(A_ADDR, [0; 32], |_| [0; 64], &mut rng, now)
            .unwrap();
        let Message::SessionRequest {
            nonce,
            ssrc,
            ephemeral,
            next,
            ..
        } = Message::parse(&request).unwrap()
        else {
            unreachable!()
        };
        let mut nb = [0u8; 16];
        rng.fill_bytes(&mut nb);
        let mut b = Call::new(A_ADDR, CallRole::Callee, nb, 0x2222_0000, 660.0, now);
        b.on_request(nonce, ssrc, ephemeral, next);
        b.set_peer_registration(xa.public(), addr(1));
        let (to, response) = b.answer(&xb, B_ADDR, &mut rng, now).unwrap();
        assert_eq!(to, addr(1), "the Response goes to A's registered endpoint");
        let resp = Message::parse(&response).unwrap();
        a.on_response(&xa, A_ADDR, &resp, now).unwrap();
        Pair {
            a,
            b,
            xa,
            xb,
            rng_a_before,
            request,
            response,
        }
    }

    fn pair() -> (Call, Call) {
        let p = pair_seeded(1);
        (p.a, p.b)
    }

    /// One media frame from `from` (at `t`), its bytes.
    fn frame(c: &mut Call, t: Time) -> Vec<u8> {
        let (mut out, mut ev) = (Vec::new(), Vec::new());
        c.on_timeout(t, [0; 32], true, &mut out, &mut ev);
        out.into_iter()
            .find(|(_, p)| binfm_stack::wire::rtp::is_rtp(p))
            .expect("a frame")
            .1
    }

    fn be_bytes_of_p_minus(k: u8) -> Vec<u8> {
        let mut p: Vec<u8> = (0..P_HEX.len() / 2)
            .map(|i| u8::from_str_radix(&P_HEX[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let last = p.len() - 1;
        p[last] -= k; // p is odd: its last byte is at least 1
        p
    }

    #[test]
    fn both_ends_agree_and_audio_flows_both_ways() {
        let (mut a, mut b) = pair();
        let mut ev = Vec::new();
        let f = frame(&mut a, Time::ZERO);
        b.on_media(Time::from_millis(200), addr(1), &f, &mut ev);
        assert_eq!(b.media.rx_stats.summary().received, 1);
        let f = frame(&mut b, Time::ZERO);
        a.on_media(Time::from_millis(200), addr(2), &f, &mut ev);
        assert_eq!(a.media.rx_stats.summary().received, 1);
        assert!(!a.holds_setup_ephemeral(), "A forgot its ephemeral");
    }

    /// Renews from `from` to `to` and completes it (Reply delivered); returns the epoch.
    /// Collects the DH values both messages carry into `values`.
    fn renew_seen(
        from: &mut Call,
        to: &mut Call,
        me: HashAddr,
        peer: HashAddr,
        seed: u64,
        values: &mut std::collections::BTreeSet<Vec<u8>>,
    ) -> u32 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (_, bytes) = from.renew(me, &mut rng, Time::ZERO).unwrap();
        if let Ok(Message::KeyRenewal { y, .. }) = Message::parse(&bytes) {
            assert!(values.insert(y), "a renewal value repeats");
        }
        let msg = Message::parse(&bytes).unwrap();
        let Ok(RenewalOutcome::Applied((_, reply))) =
            to.on_renewal(Time::ZERO, &bytes, &msg, peer, &mut rng)
        else {
            panic!("renewal refused")
        };
        let reply = Message::parse(&reply).unwrap();
        if let Message::KeyRenewalReply { y, .. } = &reply {
            assert!(values.insert(y.clone()), "a next value repeats");
        }
        let mut ev = Vec::new();
        from.on_renewal_reply(Time::ZERO, &reply, &mut ev).unwrap()
    }

    /// Defence 6: two sessions between the same two identities, and the epochs of one
    /// session, never share a key (the fingerprints of every send key differ).
    #[test]
    fn no_two_sessions_or_epochs_share_a_key() {
        let mut seen = std::collections::BTreeSet::new();
        let mut values = std::collections::BTreeSet::new();
        for seed in [1, 2] {
            let Pair { mut a, mut b, .. } = pair_seeded(seed);
            for epoch in 0..4u64 {
                if epoch > 0 {
                    // Renewals from either side in turn: fresh ephemerals both ways.
                    let e = if epoch % 2 == 1 {
                        renew_seen(
                            &mut a,
                            &mut b,
                            A_ADDR,
                            B_ADDR,
                            100 + seed * 10 + epoch,
                            &mut values,
                        )
                    } else {
                        renew_seen(
                            &mut b,
                            &mut a,
                            B_ADDR,
                            A_ADDR,
                            100 + seed * 10 + epoch,
                            &mut values,
                        )
                    };
                    assert_eq!(e as u64, epoch);
                }
                assert_eq!(a.epoch(), b.epoch());
                for k in [a.send_key_id(), b.send_key_id()] {
                    assert!(
                        seen.insert(k.unwrap()),
                        "key reused: seed {seed} epoch {epoch}"
                    );
                }
                // And the keys agree: each side decrypts the other's next frame.
                let mut ev = Vec::new();
                let t = Time::from_millis(20 * (epoch + 1));
                let f = frame(&mut a, t);
                b.on_media(t, addr(1), &f, &mut ev);
                let f = frame(&mut b, t);
                a.on_media(t, addr(2), &f, &mut ev);
                assert!(
                    a.media.media_refused.is_empty(),
                    "{:?}",
                    a.media.media_refused
                );
                assert!(
                    b.media.media_refused.is_empty(),
                    "{:?}",
                    b.media.media_refused
                );
            }
        }
        assert_eq!(seen.len(), 16);
    }

    /// Defence 4: recovering both long-term DH secrets after the call (and everything on the
    /// wire) does not decrypt a recorded frame; the ephemeral would.
    #[test]
    fn long_term_keys_do_not_decrypt_a_recorded_call() {
        let Pair {
            mut a,
            xa,
            xb,
            mut rng_a_before,
            request,
            response,
            ..
        } = pair_seeded(5);
        let recorded = frame(&mut a, Time::ZERO);
        a.hang_up();
        assert_eq!(a.send_key_id(), None, "the ended call forgot its keys");
        let (
            Ok(Message::SessionRequest {
                nonce: na,
                ephemeral: ea,
                ..
            }),
            Ok(Message::SessionResponse {
                nonce: nb,
                ephemeral: eb,
                ..
            }),
        ) = (Message::parse(&request), Message::parse(&response))
        else {
            unreachable!()
        };
        let decrypts = |root: &[u8]| {
            let keys = derive(root, &A_ADDR, &B_ADDR, &na, &nb, 0, false);
            SrtpReceiver::new(keys.recv, 0x1111_0000)
                .unprotect(&recorded)
                .is_ok()
        };
        // Everything the long-term secrets give: ss, es (B's secret with A's ephemeral),
        // DH of each with the other side's ephemeral; the paper's K alone; every root of
        // three of them.
        let ss = xa.agree(&xb.public()).unwrap();
        let es = xb.agree(&ea).unwrap();
        let se = xa.agree(&eb).unwrap();
        let candidates = [ss.clone(), es.clone(), se.clone()];
        assert!(!decrypts(&ss), "the paper's static K");
        for x in &candidates {
            for y in &candidates {
                for z in &candidates {
                    assert!(!decrypts(&session_root(x, y, z)));
                }
            }
        }
        // Control: A's ephemeral (regenerated from its RNG) does decrypt it.
        let ea_secret = DhSecret::generate(&mut rng_a_before);
        assert_eq!(ea_secret.public(), ea);
        let ee = ea_secret.agree(&eb).unwrap();
        assert!(decrypts(&session_root(&ss, &es, &ee)));
    }

    /// Defence 4 (renewals): a thief of a call's state at epoch 0 (its root secret) who
    /// records the renewal's messages cannot derive epoch 1 (both sides' fresh values are
    /// mixed in by DH); every renewal message carries a value never seen before.
    #[test]
    fn a_stolen_epoch_state_does_not_give_the_next_epoch() {
        let (mut a, mut b) = pair();
        let stolen = a.root.expect("root");
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        let (_, kr) = a.renew(A_ADDR, &mut rng, Time::ZERO).unwrap();
        let kr_msg = Message::parse(&kr).unwrap();
        let Ok(RenewalOutcome::Applied((_, reply))) =
            b.on_renewal(Time::ZERO, &kr, &kr_msg, B_ADDR, &mut rng)
        else {
            panic!("refused")
        };
        let reply_msg = Message::parse(&reply).unwrap();
        let mut ev = Vec::new();
        assert_eq!(a.on_renewal_reply(Time::ZERO, &reply_msg, &mut ev), Ok(1));
        let recorded = frame(&mut b, Time::from_millis(20));
        let (Message::KeyRenewal { y: e1, .. }, Message::KeyRenewalReply { y: n1, .. }) =
            (&kr_msg, &reply_msg)
        else {
            unreachable!()
        };
        let (na, nb) = (a.my_nonce(), b.my_nonce());
        let decrypts = |root: &[u8]| {
            let keys = derive(root, &A_ADDR, &B_ADDR, &na, &nb, 1, true);
            SrtpReceiver::new(keys.recv, 0x2222_0000)
                .unprotect(&recorded)
                .is_ok()
        };
        assert!(!decrypts(&stolen), "epoch 1 from the old root alone");
        assert!(!decrypts(&renewal_root(&stolen, e1)));
        assert!(!decrypts(&renewal_root(&stolen, n1)));
        assert!(
            decrypts(&a.root.expect("root")),
            "control: the real epoch-1 root"
        );
        assert_ne!(e1, n1);
    }

    #[test]
    fn key_renewal_with_an_invalid_y_is_refused() {
        for bad in [
            vec![0u8; 256],
            {
                let mut v = vec![0u8; 256];
                v[255] = 1;
                v
            },
            be_bytes_of_p_minus(1),
            be_bytes_of_p_minus(0),
        ] {
            let (a, mut b) = pair();
            // A properly authenticated Key Renewal, but with a Y outside 1 < Y < p-1.
            let mut msg = Message::KeyRenewal {
                sender: A_ADDR,
                counter: 1,
                y: bad.clone(),
                mac: [0; 16],
            };
            let t = mac(&a.control.unwrap(), &mac_input(&msg));
            if let Message::KeyRenewal { mac, .. } = &mut msg {
                *mac = t;
            }
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            let r = b.on_renewal(Time::ZERO, &msg.to_bytes(), &msg, B_ADDR, &mut rng);
            assert_eq!(r, Err("bad_y"), "Y = ..{:02x?} accepted", &bad[250..]);
            assert_eq!(b.epoch(), 0, "B kept its keys");
        }
    }

    /// Attack 7: a Key Renewal with a forged MAC (a flipped tag bit, the attacker's value
    /// under the genuine tag, a tag under a key the attacker chose) is refused and changes
    /// nothing; the genuine one is then accepted; replayed, it only repeats B's Reply.
    #[test]
    fn key_renewal_with_a_forged_mac_or_replayed_is_refused() {
        let (mut a, mut b) = pair();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let evil = DhSecret::generate(&mut rng);
        let (_, bytes) = a.renew(A_ADDR, &mut rng, Time::ZERO).unwrap();
        let genuine1 = Message::parse(&bytes).unwrap();
        let Message::KeyRenewal { counter, .. } = genuine1 else {
            unreachable!()
        };
        let mut flipped = genuine1.clone();
        if let Message::KeyRenewal { mac, .. } = &mut flipped {
            mac[0] ^= 1;
        }
        let mut substituted = genuine1.clone();
        if let Message::KeyRenewal { y, .. } = &mut substituted {
            *y = evil.public();
        }
        let mut own_key = Message::KeyRenewal {
            sender: A_ADDR,
            counter: counter + 100,
            y: evil.public(),
            mac: [0; 16],
        };
        let t = mac(&[0x42; 32], &mac_input(&own_key));
        if let Message::KeyRenewal { mac, .. } = &mut own_key {
            *mac = t;
        }
        for (k, forged) in [flipped, substituted, own_key].iter().enumerate() {
            let r = b.on_renewal(Time::ZERO, &forged.to_bytes(), forged, B_ADDR, &mut rng);
            assert_eq!(r, Err("bad_mac"), "forgery {k}");
            assert_eq!(b.epoch(), 0, "forgery {k}");
        }
        assert_eq!(b.control_refused, 3);
        // The genuine renewal still goes through: its counter was not burnt.
        let Ok(RenewalOutcome::Applied((_, reply))) =
            b.on_renewal(Time::ZERO, &bytes, &genuine1, B_ADDR, &mut rng)
        else {
            panic!("genuine renewal refused")
        };
        assert_eq!(b.epoch(), 1);
        // Replayed: B only repeats its Reply; epoch and keys unchanged.
        let key = b.send_key_id();
        assert_eq!(
            b.on_renewal(Time::ZERO, &bytes, &genuine1, B_ADDR, &mut rng),
            Ok(RenewalOutcome::Resent((addr(1), reply.clone())))
        );
        assert_eq!((b.epoch(), b.send_key_id()), (1, key));
        // A forged Reply is refused; the genuine one completes A's renewal.
        let mut ev = Vec::new();
        let mut bad_reply = Message::parse(&reply).unwrap();
        if let Message::KeyRenewalReply { mac, .. } = &mut bad_reply {
            mac[3] ^= 4;
        }
        assert_eq!(
            a.on_renewal_reply(Time::ZERO, &bad_reply, &mut ev),
            Err("bad_mac")
        );
        assert_eq!(a.epoch(), 0);
        let reply = Message::parse(&reply).unwrap();
        assert_eq!(a.on_renewal_reply(Time::ZERO, &reply, &mut ev), Ok(1));
        assert_eq!(
            a.on_renewal_reply(Time::ZERO, &reply, &mut ev),
            Err("no renewal pending")
        );
        // Keys agree at epoch 1.
        let f = frame(&mut b, Time::from_millis(20));
        a.on_media(Time::from_millis(40), addr(2), &f, &mut ev);
        assert!(
            a.media.media_refused.is_empty(),
            "{:?}",
            a.media.media_refused
        );
        assert_eq!(a.media.rx_stats.summary().received, 1);
    }

    fn handover_from_a(a: &mut Call, nat: SocketAddrV4) -> Vec<u8> {
        a.handover(A_ADDR, addr(9), nat, Time::ZERO).unwrap().1
    }

    fn media_bytes_to(out: &[Out], to: SocketAddrV4) -> usize {
        out.iter()
            .filter(|(d, p)| *d == to && binfm_stack::wire::rtp::is_rtp(p))
            .map(|(_, p)| p.len())
            .sum()
    }

    #[test]
    fn handover_needs_the_session_key_and_a_fresh_counter() {
        let (mut a, mut b) = pair();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let bytes = handover_from_a(&mut a, addr(10));
        let msg = Message::parse(&bytes).unwrap();
        let mut forged = msg.clone();
        if let Message::HandoverRequest { counter, mac, .. } = &mut forged {
            *counter = 5;
            mac[0] ^= 1;
        }
        let fb = forged.to_bytes();
        assert_eq!(
            b.on_handover(Time::ZERO, addr(66), &fb, &forged, &mut rng),
            Err("bad_mac")
        );
        assert!(!b.validating_path());
        assert_eq!(
            b.on_handover(Time::ZERO, addr(10), &bytes, &msg, &mut rng),
            Ok(HandoverOutcome::Accepted(addr(10)))
        );
        // An older genuine handover (counter below) is a replay.
        let old = handover_from_a(&mut a, addr(11));
        let newer = handover_from_a(&mut a, addr(12));
        let newer_msg = Message::parse(&newer).unwrap();
        assert!(
            b.on_handover(Time::ZERO, addr(12), &newer, &newer_msg, &mut rng)
                .is_ok()
        );
        let old_msg = Message::parse(&old).unwrap();
        assert_eq!(
            b.on_handover(Time::ZERO, addr(11), &old, &old_msg, &mut rng),
            Err("replayed")
        );
    }

    /// Attack 2 and defence 2: an on-path attacker races a copy of A's genuine Handover
    /// Request from its own address to B. B takes the MAC-covered endpoint, not the source:
    /// the attacker gets a path challenge it cannot answer and **no media**; A's own copy is
    /// not refused as a replay; B sends to A's new endpoint within 3x what it received from
    /// there until A answers the challenge, and then normally.
    #[test]
    fn a_raced_handover_gets_the_attacker_no_media_and_the_call_survives() {
        let (mut a, mut b) = pair();
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let (new_a, evil) = (addr(10), addr(66));
        let bytes = handover_from_a(&mut a, new_a);
        let msg = Message::parse(&bytes).unwrap();
        let mut ev = Vec::new();
        let mut out = Vec::new();
        // The attacker's copy arrives first.
        assert_eq!(
            b.on_handover(Time::ZERO, evil, &bytes, &msg, &mut rng),
            Ok(HandoverOutcome::Accepted(new_a))
        );
        let mut t = Time::ZERO;
        for _ in 0..5 {
            b.on_timeout(t, B_ADDR, true, &mut out, &mut ev);
            t += Duration::from_millis(20);
        }
        assert_eq!(media_bytes_to(&out, evil), 0, "no media to the attacker");
        assert_eq!(
            media_bytes_to(&out, new_a),
            0,
            "nothing received from A's path yet"
        );
        let to_evil: usize = out
            .iter()
            .filter(|(d, _)| *d == evil)
            .map(|(_, p)| p.len())
            .sum();
        assert!(
            to_evil as u64 <= 3 * bytes.len() as u64,
            "only a challenge: {to_evil}"
        );
        assert!(b.frames_held > 0);
        // A's real copy: a duplicate, not a replay.
        assert_eq!(
            b.on_handover(t, new_a, &bytes, &msg, &mut rng),
            Ok(HandoverOutcome::Duplicate)
        );
        let mut received_from_a = bytes.len() as u64;
        let mut sent_to_a = 0u64;
        let mut challenge = None;
        // A keeps sending media from its new endpoint; B answers within the budget.
        for _ in 0..10 {
            let f = frame(&mut a, t);
            b.on_media(t, new_a, &f, &mut ev);
            received_from_a += f.len() as u64;
            out.clear();
            b.on_timeout(t, B_ADDR, true, &mut out, &mut ev);
            for (d, p) in &out {
                assert_ne!(*d, evil, "nothing more to the attacker");
                if *d == new_a {
                    sent_to_a += p.len() as u64;
                    if let Ok(m @ Message::PathChallenge { .. }) = Message::parse(p) {
                        challenge = Some(m);
                    }
                }
            }
            assert!(sent_to_a <= 3 * received_from_a, "anti-amplification");
            t += Duration::from_millis(20);
        }
        assert!(sent_to_a > 0, "B sends to A's new path before validation");
        // A answers the challenge that reached it; the path is validated.
        let (to, resp) = a
            .on_path_challenge(t, A_ADDR, &challenge.expect("challenged"))
            .unwrap();
        assert_eq!(to, addr(2));
        let resp = Message::parse(&resp).unwrap();
        // A forged response (the attacker's guess) is refused first.
        let mut forged = resp.clone();
        if let Message::PathResponse { mac, .. } = &mut forged {
            mac[0] ^= 1;
        }
        assert_eq!(b.on_path_response(t, &forged), Err("bad_mac"));
        assert_eq!(b.on_path_response(t, &resp), Ok(new_a));
        assert_eq!(b.peer_addr, Some(new_a));
        assert!(!b.validating_path());
        out.clear();
        b.on_timeout(
            t + Duration::from_millis(20),
            B_ADDR,
            true,
            &mut out,
            &mut ev,
        );
        assert!(media_bytes_to(&out, new_a) > 0);
        assert_eq!(b.state, CallState::Active);
    }

    /// Defence 3: with no authenticated packet from the peer for the consent timeout, media
    /// stops and the call ends; unauthenticated packets do not refresh consent.
    #[test]
    fn consent_expires_without_authenticated_packets() {
        let (mut a, mut b) = pair();
        let mut ev = Vec::new();
        // A hears B once at 1 s, then only junk claiming B's SSRC.
        let f = frame(&mut b, Time::ZERO);
        a.on_media(Time::from_secs(1), addr(2), &f, &mut ev);
        let mut junk = f.clone();
        let n = junk.len();
        junk[n - 1] ^= 1;
        let mut out = Vec::new();
        let mut t = Time::from_secs(1);
        while t < Time::from_secs(40) {
            a.on_media(t, addr(2), &junk, &mut ev);
            out.clear();
            a.on_timeout(t, A_ADDR, true, &mut out, &mut ev);
            if t <= Time::from_secs(31) {
                assert_eq!(a.state, CallState::Active, "at {t:?}");
            }
            t += Duration::from_millis(500);
        }
        assert_eq!(a.state, CallState::Ended);
        assert!(out.is_empty(), "no media after consent expired");
        assert!(ev.iter().any(|e| matches!(
            e.downcast_ref::<CallEvent>(),
            Some(CallEvent::ConsentExpired {
                heard_peer: true,
                ..
            })
        )));
        // The callee that never hears the caller stops after the initial consent (4 s).
        let mut ev = Vec::new();
        b.on_timeout(INITIAL_CONSENT, B_ADDR, true, &mut out, &mut ev);
        assert_eq!(b.state, CallState::Active);
        b.on_timeout(
            INITIAL_CONSENT + Duration::from_millis(1),
            B_ADDR,
            true,
            &mut out,
            &mut ev,
        );
        assert_eq!(b.state, CallState::Ended);
    }

    #[test]
    fn session_request_signatures() {
        use ed25519_dalek::{Signer, SigningKey};
        let key = SigningKey::from_bytes(&[7; 32]);
        let pk = key.verifying_key().to_bytes();
        let mut msg = Message::SessionRequest {
            caller: crate::wallet::hash_addr_of(&pk),
            callee: B_ADDR,
            nonce: [1; 16],
            ssrc: 2,
            ephemeral: vec![3; 256],
            next: vec![4; 256],
            public_key: pk,
            signature: [0; 64],
        };
        let sig = key.sign(&signing_input(&msg)).to_bytes();
        if let Message::SessionRequest { signature, .. } = &mut msg {
            *signature = sig;
        }
        assert_eq!(verify_session_request(&msg), Ok(()));
        let mut other = msg.clone();
        if let Message::SessionRequest { ephemeral, .. } = &mut other {
            ephemeral[0] ^= 1;
        }
        assert_eq!(verify_session_request(&other), Err("bad_signature"));
        let mut other = msg.clone();
        if let Message::SessionRequest { caller, .. } = &mut other {
            *caller = A_ADDR;
        }
        assert_eq!(verify_session_request(&other), Err("key_not_caller"));
    }
}
