//! The end node (EN): registers its transport addresses and DH public value with its nearest
//! super node as a signed ToALL Tx (paper, Figure 7), and looks peers up by hash address with
//! one Query/Reply (Figure 8, first step).
//!
//! The EN guesses its NAT port with H16, but trusts what the SN observed: a `TxAck` with
//! `EndpointMismatch` carries the real public endpoint, and the EN re-registers with it (the
//! NAT may have had to pick another port). Every request is retransmitted with backoff until
//! answered, so loss on the access link never loses a registration; after three unanswered
//! tries the EN fails over to the next SN of its DHCP list.
//!
//! The node is split by concern: `registration` (address, Tx registration, SN failover),
//! `lookup` (the Query/Reply client), `calls` (call setup, handover and rekey glue
//! around [`crate::call::Call`]); this file holds the node, its datagram dispatch and its
//! timers.

mod calls;
pub mod events;
mod light;
mod lookup;
mod registration;
mod role;

#[cfg(test)]
mod tests;

pub use calls::{
    ANSWERED_REMEMBERED, MAX_CALLS, MAX_INCOMING_LOOKUPS, NOT_FOUND_RETRIES, NOT_FOUND_RETRY_AFTER,
    REQUEST_CALLER_LIMIT, REQUEST_SOURCE_LIMIT,
};
pub use light::{FRESH_BLOCKS, HEADER_RETRY};
pub use lookup::{MAX_PENDING_QUERIES, MAX_QUERY_TRIES, PeerInfo};
pub use registration::TRIES_PER_SN;

use crate::call::{Call, DEFAULT_CONSENT_TIMEOUT};
use crate::chain::{ChainConfig, HeaderChain};
use crate::event::Event;
use crate::ratelimit::SourceLimiter;
use crate::wallet::Wallet;
use crate::work::Work;
use crate::{Time, Transmit};
use binfm_stack::wire::binfm::Message;
use binfm_stack::wire::ports;
use binfm_stack::wire::rtp::is_rtp;
use binfm_stack::wire::toall::{HashAddr, ToallTx};
use events::EnEvent;
use lookup::PendingQuery;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use registration::Registration;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddrV4;
use std::time::Duration;

/// Why a Query was sent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Purpose {
    /// A peer lookup (a call's, or a scheduled one).
    Lookup,
    /// The same lookup asked of a second SN: `first` is what the first SN proved (`None`
    /// if it said "not found").
    Confirm { first: Option<PeerInfo> },
    /// Our own address after a start: the latest seq we signed, so we resume above it.
    Resume,
}

/// Sans-IO end node.
#[derive(Debug)]
pub struct EndNode {
    wallet: Wallet,
    port: u16,
    private: Option<SocketAddrV4>,
    nat: Option<SocketAddrV4>,
    /// The NAT's public address from DHCP (option 224); `None` without a NAT. An SN's
    /// `EndpointMismatch` is believed only for this address (or the private one without a
    /// NAT): only the port may differ from our H16 guess.
    nat_public: Option<std::net::Ipv4Addr>,
    sns: Vec<SocketAddrV4>,
    sn_index: usize,
    reg: Option<Registration>,
    registered: Option<ToallTx>,
    /// When the next NAT keepalive (a GetHeaders) is due, while registered.
    keepalive_at: Option<Time>,
    queries: BTreeMap<u32, PendingQuery>,
    results: VecDeque<(u32, HashAddr, Option<PeerInfo>)>,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    want_unconfirmed: bool,
    calls: Vec<Call>,
    /// Calls whose peer was not found: peer -> (when to ask again, if waiting; retries so far).
    not_found: BTreeMap<HashAddr, (Option<Time>, u32)>,
    /// ChaCha20 keyed with the 256-bit seed: nonces, SSRCs, request ids, renewed DH keys.
    rng: ChaCha20Rng,
    /// What its calls send (a tone unless [`EndNode::set_audio_source`] says otherwise).
    audio: crate::session::audio::AudioSource,
    had_address_before: bool,
    /// The best header chain of our SNs (light client).
    headers: HeaderChain,
    /// The GetHeaders in flight: to which SN, when.
    header_request: Option<(SocketAddrV4, Time)>,
    /// Whether this start of the node has asked the chain for its latest seq.
    resume_asked: bool,
    /// Resume lookups made after a stale-seq refusal (bounded).
    resume_retries: u32,
    /// Media packets that matched no call.
    pub unknown_media: u64,
    /// New calls refused because [`MAX_CALLS`] live calls exist.
    pub calls_refused: u64,
    /// Session Requests refused before any lookup, by reason (`bad_signature`,
    /// `key_not_caller`, `replayed`, `source_rate_limited`, ...).
    pub requests_refused: BTreeMap<&'static str, u64>,
    /// Path challenges and responses refused, by reason.
    pub path_refused: BTreeMap<&'static str, u64>,
    request_sources: SourceLimiter,
    request_callers: SourceLimiter<HashAddr>,
    /// Requests answered (caller ‖ nonce), oldest first, at most [`ANSWERED_REMEMBERED`].
    answered: BTreeSet<[u8; 48]>,
    answered_order: VecDeque<[u8; 48]>,
    consent_timeout: Duration,
    /// Signing, verifying and DH work outside the calls since [`EndNode::take_work`].
    work: Work,
}

impl EndNode {
    /// An EN with its wallet, using UDP `port` for control and media; `seed` (256 bits,
    /// see [`crate::keyseed`]) keys the ChaCha20 generator of its nonces, SSRCs, request ids
    /// and renewed keys, and must differ for every start of the node; `tone_hz` is the tone
    /// it sends in calls.
    pub fn new(wallet: Wallet, port: u16, seed: [u8; 32], tone_hz: f64) -> Self {
        EndNode {
            wallet,
            port,
            private: None,
            nat: None,
            nat_public: None,
            sns: Vec::new(),
            sn_index: 0,
            reg: None,
            registered: None,
            keepalive_at: None,
            queries: BTreeMap::new(),
            results: VecDeque::new(),
            not_found: BTreeMap::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            want_unconfirmed: false,
            calls: Vec::new(),
            rng: ChaCha20Rng::from_seed(seed),
            audio: crate::session::audio::AudioSource::Tone(tone_hz),
            had_address_before: false,
            headers: HeaderChain::new(ChainConfig::default()),
            header_request: None,
            resume_asked: false,
            resume_retries: 0,
            unknown_media: 0,
            calls_refused: 0,
            requests_refused: BTreeMap::new(),
            path_refused: BTreeMap::new(),
            request_sources: SourceLimiter::new(REQUEST_SOURCE_LIMIT),
            request_callers: SourceLimiter::new(REQUEST_CALLER_LIMIT),
            answered: BTreeSet::new(),
            answered_order: VecDeque::new(),
            consent_timeout: DEFAULT_CONSENT_TIMEOUT,
            work: Work::NONE,
        }
    }

    /// What its calls send from now on, instead of the tone given to [`EndNode::new`].
    pub fn set_audio_source(&mut self, audio: crate::session::audio::AudioSource) {
        self.audio = audio;
    }

    /// The expensive operations done since the last call of this, the calls' included
    /// ([`crate::role::Role::take_work`]).
    pub fn take_work(&mut self) -> Work {
        let mut w = self.work.take();
        for c in &mut self.calls {
            w.merge(c.take_work());
        }
        w
    }

    /// Consent freshness (RFC 7675) of new calls: with no authenticated packet from the peer
    /// for this long a call stops its media and ends (default 30 s).
    pub fn set_consent_timeout(&mut self, t: Duration) {
        self.consent_timeout = t;
    }

    /// The calls (active and ended).
    pub fn calls(&self) -> &[Call] {
        &self.calls
    }

    /// Ask SNs for the newest unconfirmed Tx too (they answer only if configured to).
    pub fn set_want_unconfirmed(&mut self, want: bool) {
        self.want_unconfirmed = want;
    }

    /// The EN's hash address.
    pub fn hash_addr(&self) -> HashAddr {
        self.wallet.hash_addr()
    }

    /// The wallet (the session layer needs the DH secret).
    pub fn wallet(&self) -> &Wallet {
        &self.wallet
    }

    /// The UDP port of the EN's control messages.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The Tx the nearest SN accepted last.
    pub fn registered(&self) -> Option<&ToallTx> {
        self.registered.as_ref()
    }

    /// The super node currently used.
    pub fn super_node(&self) -> Option<SocketAddrV4> {
        self.sns.get(self.sn_index).copied()
    }

    /// Queues a datagram from the EN's port.
    fn send(&mut self, dst: SocketAddrV4, payload: Vec<u8>) {
        self.out.push_back(Transmit {
            src_ip: None,
            src_port: self.port,
            dst,
            payload,
        });
    }

    /// A datagram for the EN's control port.
    pub fn handle_datagram(
        &mut self,
        now: Time,
        from: SocketAddrV4,
        _to: SocketAddrV4,
        data: &[u8],
    ) {
        if is_rtp(data) {
            self.on_media(now, from, data);
            return;
        }
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(e) => {
                self.events.push_back(
                    EnEvent::Malformed {
                        from,
                        error: e.to_string(),
                    }
                    .into(),
                );
                return;
            }
        };
        match msg {
            Message::SessionRequest { .. } => return self.on_session_request(now, from, &msg),
            Message::SessionResponse { .. } => return self.on_session_response(now, from, &msg),
            Message::HandoverRequest { sender, .. } => {
                return self.on_handover(now, from, sender, data, &msg);
            }
            Message::KeyRenewal { sender, .. } => {
                return self.on_key_renewal(now, from, sender, data, &msg);
            }
            Message::KeyRenewalReply { sender, .. } => {
                return self.on_key_renewal_reply(now, from, sender, &msg);
            }
            Message::PathChallenge { sender, .. } => {
                return self.on_path_challenge(now, from, sender, &msg);
            }
            Message::PathResponse { sender, .. } => {
                return self.on_path_response(now, from, sender, &msg);
            }
            _ => {}
        }
        if !self.sns.contains(&from) {
            self.events.push_back(EnEvent::Unexpected { from }.into());
            return;
        }
        match msg {
            Message::TxAck {
                tx_id,
                status,
                observed,
            } => self.on_ack(now, from, tx_id, status, observed),
            Message::Reply {
                request_id,
                hash_addr,
                found,
                tx,
                unconfirmed,
                proof,
                ..
            } => self.on_reply(
                now,
                from,
                request_id,
                hash_addr,
                found,
                tx,
                unconfirmed,
                proof,
            ),
            Message::Headers { headers } => self.on_headers(now, from, &headers),
            _ => self.events.push_back(EnEvent::Unexpected { from }.into()),
        }
    }

    /// Retransmits what is due (calls, registration, queries), in that order; fails over to
    /// the next SN after [`TRIES_PER_SN`] tries.
    pub fn handle_timeout(&mut self, now: Time) {
        self.calls_due(now);
        self.registration_due(now);
        self.queries_due(now);
        self.keepalive_due(now);
    }

    /// Next retransmission time.
    pub fn poll_timeout(&self) -> Option<Time> {
        let reg = self.reg.as_ref().map(|r| r.backoff.next());
        let q = self.queries.values().map(|q| q.backoff.next()).min();
        let calls = self.calls.iter().filter_map(Call::poll_timeout).min();
        let again = self.not_found.values().filter_map(|e| e.0).min();
        [reg, q, calls, again, self.keepalive_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

/// The default control port.
pub const DEFAULT_PORT: u16 = ports::EN;

/// Whether `n` is 1, 10, 100, ...: when a counter is worth logging.
pub(super) fn power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}
