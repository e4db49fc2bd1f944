//! The end node (EN): registers its transport addresses and DH public value with its nearest
//! super node as a signed ToALL Tx (paper, Figure 7), and looks peers up by hash address with
//! one Query/Reply (Figure 8, first step).
//!
//! The EN guesses its NAT port with H16, but trusts what the SN observed: a `TxAck` with
//! `EndpointMismatch` carries the real public endpoint, and the EN re-registers with it (the
//! NAT may have had to pick another port). Every request is retransmitted with backoff until
//! answered, so loss on the access link never loses a registration; after three unanswered
//! tries the EN fails over to the next SN of its DHCP list.

use crate::call::{Call, CallRole, CallState};
use crate::nat::h16;
use crate::session::media::rtp_ssrc;
use crate::session::retransmit::{Backoff, RTO_INITIAL, RTO_MAX};
use crate::util::{hex, millis};
use crate::wallet::{Wallet, verify_tx};
use crate::{Event, Time, Transmit};
use binfm_stack::wire::binfm::{Message, TxStatus};
use binfm_stack::wire::ports;
use binfm_stack::wire::rtp::is_rtp;
use binfm_stack::wire::toall::{HashAddr, ToallTx};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

/// Unanswered tries before moving to the next super node.
pub const TRIES_PER_SN: u32 = 3;
/// Queries in flight at most (each is bounded in tries too).
pub const MAX_PENDING_QUERIES: usize = 64;
/// Tries of one query before giving up.
pub const MAX_QUERY_TRIES: u32 = 6;
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

/// What a successful lookup returned, after the EN checked it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo {
    /// The peer's registered Tx (signature and address binding verified).
    pub tx: ToallTx,
    /// Block height of the Tx.
    pub height: u64,
    /// Confirmations at the SN.
    pub confirmations: u32,
    /// True when the Tx came from the SN's mempool (not yet in a block).
    pub unconfirmed: bool,
}

#[derive(Debug)]
struct Registration {
    tx: ToallTx,
    tx_id: [u8; 32],
    backoff: Backoff,
}

#[derive(Debug)]
struct PendingQuery {
    hash_addr: HashAddr,
    first_sent: Time,
    backoff: Backoff,
}

/// Sans-IO end node.
#[derive(Debug)]
pub struct EndNode {
    wallet: Wallet,
    port: u16,
    private: Option<SocketAddrV4>,
    nat: Option<SocketAddrV4>,
    sns: Vec<SocketAddrV4>,
    sn_index: usize,
    reg: Option<Registration>,
    registered: Option<ToallTx>,
    queries: BTreeMap<u32, PendingQuery>,
    next_request_id: u32,
    results: VecDeque<(u32, HashAddr, Option<PeerInfo>)>,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    want_unconfirmed: bool,
    calls: Vec<Call>,
    /// Calls whose peer was not found: peer -> (when to ask again, if waiting; retries so far).
    not_found: BTreeMap<HashAddr, (Option<Time>, u32)>,
    rng: ChaCha8Rng,
    tone_hz: f64,
    had_address_before: bool,
    /// Media packets that matched no call.
    pub unknown_media: u64,
    /// New calls refused because [`MAX_CALLS`] live calls exist.
    pub calls_refused: u64,
}

impl EndNode {
    /// An EN with its wallet, using UDP `port` for control and media; `seed` drives its
    /// nonces, SSRCs and renewed keys; `tone_hz` is the tone it sends in calls.
    pub fn new(wallet: Wallet, port: u16, seed: u64, tone_hz: f64) -> Self {
        EndNode {
            wallet,
            port,
            private: None,
            nat: None,
            sns: Vec::new(),
            sn_index: 0,
            reg: None,
            registered: None,
            queries: BTreeMap::new(),
            next_request_id: 1,
            results: VecDeque::new(),
            not_found: BTreeMap::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            want_unconfirmed: false,
            calls: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            tone_hz,
            had_address_before: false,
            unknown_media: 0,
            calls_refused: 0,
        }
    }

    /// The calls (active and ended).
    pub fn calls(&self) -> &[Call] {
        &self.calls
    }

    /// Starts a call to `peer` (paper, Figure 8): Query for the peer's Tx first.
    pub fn call(&mut self, now: Time, peer: HashAddr) {
        if !self.room_for_call(&peer, None) {
            self.events.push_back(
                Event::new("call.failed")
                    .with("peer", hex(&peer))
                    .with("reason", "too many calls"),
            );
            return;
        }
        let nonce: [u8; 16] = self.rng.random();
        let ssrc: u32 = self.rng.random();
        let call = Call::new(peer, CallRole::Caller, nonce, ssrc, self.tone_hz, now);
        self.events.push_back(
            Event::new("call.started")
                .with("peer", hex(&peer))
                .with("ssrc", ssrc),
        );
        self.look_up_peer(now, call);
    }

    /// Room for one more call: forgets the oldest ended call if the list is full. False
    /// (counted, reported on the 1st, 10th, 100th, ... refusal) when every call is live.
    fn room_for_call(&mut self, peer: &HashAddr, from: Option<SocketAddrV4>) -> bool {
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
                Event::new("call.refused")
                    .with("reason", "too many calls")
                    .with("peer", hex(peer))
                    .with("from", from.map(|f| f.to_string()))
                    .with("count", self.calls_refused),
            );
        }
        false
    }

    /// Both ends of a call start by looking the peer up (Figure 8); the call waits for it.
    fn look_up_peer(&mut self, now: Time, mut call: Call) {
        match self.lookup(now, call.peer) {
            Some(id) => {
                call.state = CallState::LookingUp(id);
                self.calls.push(call);
            }
            None => self.events.push_back(
                Event::new("call.failed")
                    .with("peer", hex(&call.peer))
                    .with("reason", "lookup refused"),
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
                Event::new("call.ended")
                    .with("peer", hex(&peer))
                    .with("frames_sent", c.media.frames_sent)
                    .with("frames_received", c.media.rx_stats.summary().received),
            );
        }
    }

    /// Renews the DH key (paper, Figure 10): a Key Renewal to every active call's peer,
    /// authenticated with the current session key, and a new ToALL Tx with the new Y.
    pub fn rekey(&mut self, now: Time) {
        let mut rng = ChaCha8Rng::seed_from_u64(self.rng.random());
        self.wallet.renew_dh(&mut rng);
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
                    Event::new("call.rekey_sent")
                        .with("peer", hex(&c.peer))
                        .with("epoch", c.epoch() + 1),
                );
                sends.push(o);
            }
        }
        for (to, payload) in sends {
            self.out.push_back(Transmit {
                src_ip: None,
                src_port: self.port,
                dst: to,
                payload,
            });
        }
        self.register(now, "key_renewal");
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

    /// A new address from DHCP: remember it and register (paper, Figure 7).
    pub fn on_address(
        &mut self,
        now: Time,
        private_ip: Ipv4Addr,
        nat_public: Option<Ipv4Addr>,
        sns: Vec<SocketAddrV4>,
    ) {
        let private = SocketAddrV4::new(private_ip, self.port);
        // Without a NAT the EN is its own public endpoint.
        let nat = match nat_public {
            Some(ip) => SocketAddrV4::new(ip, h16(private_ip, self.port)),
            None => private,
        };
        let moved = self.private.is_some_and(|p| p != private) || self.had_address_before;
        self.private = Some(private);
        self.nat = Some(nat);
        if !sns.is_empty() {
            self.sns = sns;
            self.sn_index = 0;
        }
        if moved {
            // Mid-call handover (paper, Figure 9): tell every peer at once.
            let me = self.wallet.hash_addr();
            let mut sends = Vec::new();
            for c in self
                .calls
                .iter_mut()
                .filter(|c| c.state == CallState::Active)
            {
                if let Some(o) = c.handover(me, private, nat, now) {
                    self.events.push_back(
                        Event::new("call.handover_sent")
                            .with("peer", hex(&c.peer))
                            .with_display("private", private)
                            .with_display("nat_guess", nat),
                    );
                    sends.push(o);
                }
            }
            for (to, payload) in sends {
                self.out.push_back(Transmit {
                    src_ip: None,
                    src_port: self.port,
                    dst: to,
                    payload,
                });
            }
        }
        self.had_address_before = false;
        self.register(now, "new_address");
    }

    /// The address was lost (lease expired, moving): stop retransmitting.
    pub fn on_address_lost(&mut self) {
        if self.private.is_some() {
            self.had_address_before = true;
        }
        self.private = None;
        self.reg = None;
    }

    /// Renews the DH key pair and registers the new Y (key renewal, paper Figure 10).
    pub fn renew_key(&mut self, now: Time, rng: &mut impl rand::CryptoRng) {
        self.wallet.renew_dh(rng);
        self.register(now, "key_renewal");
    }

    fn register(&mut self, now: Time, why: &str) {
        let (Some(private), Some(nat)) = (self.private, self.nat) else {
            return;
        };
        self.wallet.set_addresses(private, nat);
        let tx = self.wallet.next_tx(millis(now));
        let tx_id = tx.id();
        self.events.push_back(
            Event::new("en.register")
                .with("seq", tx.out.seq)
                .with("why", why)
                .with_display("private", private)
                .with_display("nat", nat)
                .with("hash_addr", hex(&tx.out.hash_addr)),
        );
        self.reg = Some(Registration {
            tx,
            tx_id,
            backoff: Backoff::new(RTO_INITIAL, RTO_MAX, now),
        });
        self.send_registration(now);
    }

    fn send_registration(&mut self, now: Time) {
        let Some(sn) = self.super_node() else {
            self.events.push_back(Event::new("en.no_super_node"));
            self.reg = None;
            return;
        };
        let Some(reg) = &mut self.reg else { return };
        reg.backoff.on_send(now);
        let payload = Message::TxSubmit { tx: reg.tx.clone() }.to_bytes();
        self.events.push_back(
            Event::new("en.tx_sent")
                .with("seq", reg.tx.out.seq)
                .with("try", reg.backoff.tries())
                .with_display("sn", sn),
        );
        self.out.push_back(Transmit {
            src_ip: None,
            src_port: self.port,
            dst: sn,
            payload,
        });
    }

    /// Looks up a peer's hash address at the nearest SN; the answer comes as an event and
    /// through [`EndNode::poll_lookup`]. Returns the request id.
    pub fn lookup(&mut self, now: Time, hash_addr: HashAddr) -> Option<u32> {
        if self.queries.len() >= MAX_PENDING_QUERIES {
            self.events.push_back(
                Event::new("en.lookup_refused").with("reason", "too many pending queries"),
            );
            return None;
        }
        let id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1).max(1);
        self.queries.insert(
            id,
            PendingQuery {
                hash_addr,
                first_sent: now,
                backoff: Backoff::new(RTO_INITIAL, RTO_MAX, now),
            },
        );
        self.send_query(now, id);
        Some(id)
    }

    fn send_query(&mut self, now: Time, id: u32) {
        let Some(sn) = self.super_node() else { return };
        let want_unconfirmed = self.want_unconfirmed;
        let Some(q) = self.queries.get_mut(&id) else {
            return;
        };
        q.backoff.on_send(now);
        let payload = Message::Query {
            request_id: id,
            hash_addr: q.hash_addr,
            want_unconfirmed,
        }
        .to_bytes();
        self.events.push_back(
            Event::new("en.query_sent")
                .with("request_id", id)
                .with("try", q.backoff.tries())
                .with("peer", hex(&q.hash_addr))
                .with_display("sn", sn),
        );
        self.out.push_back(Transmit {
            src_ip: None,
            src_port: self.port,
            dst: sn,
            payload,
        });
    }

    /// Takes the next finished lookup: (request id, wanted address, result or `None` if not found).
    pub fn poll_lookup(&mut self) -> Option<(u32, HashAddr, Option<PeerInfo>)> {
        self.results.pop_front()
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
                            Event::new("en.media_unknown_ssrc")
                                .with_display("from", from)
                                .with("count", self.unknown_media),
                        );
                    }
                }
            }
            self.events.extend(evs);
            return;
        }
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(e) => {
                self.events.push_back(
                    Event::new("en.malformed")
                        .with_display("from", from)
                        .with_display("error", e),
                );
                return;
            }
        };
        match msg {
            Message::SessionRequest {
                caller,
                callee,
                nonce,
                ssrc,
            } => return self.on_session_request(now, from, caller, callee, nonce, ssrc),
            Message::SessionResponse { .. } => return self.on_session_response(now, from, &msg),
            Message::HandoverRequest { sender, .. } => {
                return self.on_handover(now, from, sender, &msg);
            }
            Message::KeyRenewal { sender, .. } => {
                return self.on_key_renewal(now, from, sender, &msg);
            }
            _ => {}
        }
        if !self.sns.contains(&from) {
            self.events
                .push_back(Event::new("en.unexpected").with_display("from", from));
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
                height,
                confirmations,
                tx,
                unconfirmed,
            } => self.on_reply(
                now,
                request_id,
                hash_addr,
                found,
                height,
                confirmations,
                tx,
                unconfirmed,
            ),
            _ => self
                .events
                .push_back(Event::new("en.unexpected").with_display("from", from)),
        }
    }

    fn on_ack(
        &mut self,
        now: Time,
        from: SocketAddrV4,
        tx_id: [u8; 32],
        status: TxStatus,
        observed: SocketAddrV4,
    ) {
        let Some(reg) = &self.reg else { return };
        if reg.tx_id != tx_id {
            return; // an ack for an older registration
        }
        match status {
            TxStatus::Accepted | TxStatus::Duplicate => {
                let seq = reg.tx.out.seq;
                self.events.push_back(
                    Event::new("en.registered")
                        .with("seq", seq)
                        .with_display("sn", from)
                        .with_display("observed", observed),
                );
                self.registered = self.reg.take().map(|r| r.tx);
            }
            TxStatus::EndpointMismatch => {
                let guessed = self.nat;
                self.events.push_back(
                    Event::new("en.endpoint_corrected")
                        .with("guessed", guessed.map(|g| g.to_string()))
                        .with_display("observed", observed),
                );
                if self.nat == Some(observed) {
                    // The SN insists on what we already sent: do not loop; keep retransmitting.
                    return;
                }
                self.nat = Some(observed);
                self.register(now, "endpoint_corrected");
            }
            other => {
                self.events.push_back(
                    Event::new("en.register_rejected").with("status", format!("{other:?}")),
                );
                self.reg = None;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_reply(
        &mut self,
        now: Time,
        request_id: u32,
        hash_addr: HashAddr,
        found: bool,
        height: u64,
        confirmations: u32,
        tx: Option<ToallTx>,
        unconfirmed: Option<ToallTx>,
    ) {
        let Some(q) = self.queries.get(&request_id) else {
            return;
        };
        if q.hash_addr != hash_addr {
            self.events.push_back(
                Event::new("en.reply_rejected")
                    .with("request_id", request_id)
                    .with("reason", "reply names another hash address"),
            );
            return;
        }
        let rtt_ns = u64::try_from(now.saturating_sub(q.first_sent).as_nanos()).unwrap_or(u64::MAX);
        let (chosen, is_unconfirmed) = match (tx, unconfirmed) {
            (_, Some(u)) if self.want_unconfirmed => (Some(u), true),
            (t, _) => (t, false),
        };
        let result = match (found, chosen) {
            (true, Some(tx)) => {
                if tx.out.hash_addr != hash_addr {
                    self.events.push_back(
                        Event::new("en.reply_rejected")
                            .with("request_id", request_id)
                            .with("reason", "Tx belongs to another hash address"),
                    );
                    return;
                }
                if let Err(e) = verify_tx(&tx) {
                    self.events.push_back(
                        Event::new("en.reply_rejected")
                            .with("request_id", request_id)
                            .with_display("reason", e),
                    );
                    return;
                }
                self.events.push_back(
                    Event::new("en.lookup_ok")
                        .with("request_id", request_id)
                        .with("peer", hex(&hash_addr))
                        .with("seq", tx.out.seq)
                        .with_display(
                            "private",
                            SocketAddrV4::new(tx.out.private_ip, tx.out.private_port),
                        )
                        .with_display("nat", SocketAddrV4::new(tx.out.nat_ip, tx.out.nat_port))
                        .with("height", height)
                        .with("confirmations", confirmations)
                        .with("unconfirmed", is_unconfirmed)
                        .with("rtt_ns", rtt_ns),
                );
                Some(PeerInfo {
                    tx,
                    height,
                    confirmations,
                    unconfirmed: is_unconfirmed,
                })
            }
            _ => {
                self.events.push_back(
                    Event::new("en.lookup_not_found")
                        .with("request_id", request_id)
                        .with("peer", hex(&hash_addr))
                        .with("rtt_ns", rtt_ns),
                );
                None
            }
        };
        self.queries.remove(&request_id);
        self.continue_call(now, request_id, result.as_ref());
        self.results.push_back((request_id, hash_addr, result));
    }

    /// A lookup finished: the call waiting for it goes on.
    fn continue_call(&mut self, now: Time, request_id: u32, info: Option<&PeerInfo>) {
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
                    Event::new("call.peer_not_found_yet")
                        .with("peer", hex(&peer))
                        .with("retry", tries + 1)
                        .with("retry_in_ms", NOT_FOUND_RETRY_AFTER.as_millis() as u64),
                );
                return;
            }
            self.not_found.remove(&peer);
            let c = &mut self.calls[idx];
            c.hang_up();
            self.events.push_back(
                Event::new("call.failed")
                    .with("peer", hex(&c.peer))
                    .with("reason", "peer not found"),
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
                        Event::new("call.request_sent")
                            .with("peer", hex(&c.peer))
                            .with_display("to", to),
                    );
                    self.out.push_back(Transmit {
                        src_ip: None,
                        src_port: self.port,
                        dst: to,
                        payload,
                    });
                }
            }
            CallRole::Callee => match self.wallet.dh().agree(&info.tx.out.y) {
                Ok(shared) => {
                    if let Some((to, payload)) = c.answer(&shared, me, now) {
                        self.events.push_back(
                            Event::new("call.active")
                                .with("peer", hex(&c.peer))
                                .with("role", "callee")
                                .with_display("peer_addr", to),
                        );
                        self.out.push_back(Transmit {
                            src_ip: None,
                            src_port: self.port,
                            dst: to,
                            payload,
                        });
                    }
                }
                Err(e) => {
                    c.hang_up();
                    self.events.push_back(
                        Event::new("call.failed")
                            .with("peer", hex(&c.peer))
                            .with_display("reason", e),
                    );
                }
            },
        }
    }

    fn on_session_request(
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
                Event::new("call.request_refused")
                    .with("reason", "not for us")
                    .with_display("from", from),
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
                    Event::new("call.response_resent")
                        .with("peer", hex(&caller))
                        .with_display("to", from),
                );
                self.out.push_back(Transmit {
                    src_ip: None,
                    src_port: self.port,
                    dst: from,
                    payload,
                });
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
            Event::new("call.incoming")
                .with("peer", hex(&caller))
                .with_display("from", from),
        );
        // Figure 8: the callee looks the caller up too, and trusts only what the chain says.
        self.look_up_peer(now, call);
    }

    fn on_session_response(&mut self, now: Time, from: SocketAddrV4, msg: &Message) {
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
    fn finish_setup(
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
                    Event::new("call.failed")
                        .with("peer", hex(&c.peer))
                        .with_display("reason", e),
                );
                return;
            }
        };
        match c.on_response(&shared, me, msg, now) {
            Ok(()) => {
                let mut ev = Event::new("call.active")
                    .with("peer", hex(&c.peer))
                    .with("role", "caller");
                if let Some(to) = c.peer_addr {
                    ev = ev.with_display("peer_addr", to);
                }
                self.events.push_back(ev);
                // Audio starts the moment the keys are ready: the first frame goes now.
                let mut out = Vec::new();
                let mut evs = Vec::new();
                c.on_timeout(now, have_address, &mut out, &mut evs);
                self.events.extend(evs);
                for (to, payload) in out {
                    self.out.push_back(Transmit {
                        src_ip: None,
                        src_port: self.port,
                        dst: to,
                        payload,
                    });
                }
            }
            Err(reason) => {
                let peer = c.peer;
                self.events.push_back(
                    Event::new("call.confirm_failed")
                        .with("peer", hex(&peer))
                        .with("reason", reason)
                        .with("retry", retry_from.is_some()),
                );
                if retry_from.is_none() {
                    c.hang_up();
                    self.events.push_back(
                        Event::new("call.failed")
                            .with("peer", hex(&peer))
                            .with("reason", reason),
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

    fn on_handover(&mut self, _now: Time, from: SocketAddrV4, sender: HashAddr, msg: &Message) {
        let Some(c) = self
            .calls
            .iter_mut()
            .find(|c| c.peer == sender && c.state == CallState::Active)
        else {
            self.events.push_back(
                Event::new("call.handover_rejected")
                    .with("reason", "no such call")
                    .with_display("from", from),
            );
            return;
        };
        match c.on_handover(from, msg) {
            Ok(()) => self.events.push_back(
                Event::new("call.handover_accepted")
                    .with("peer", hex(&sender))
                    .with_display("new_addr", from),
            ),
            Err(reason) => self.events.push_back(
                Event::new("call.handover_rejected")
                    .with("peer", hex(&sender))
                    .with("reason", reason)
                    .with_display("from", from),
            ),
        }
    }

    fn on_key_renewal(&mut self, _now: Time, from: SocketAddrV4, sender: HashAddr, msg: &Message) {
        let me = self.wallet.hash_addr();
        let Some(c) = self
            .calls
            .iter_mut()
            .find(|c| c.peer == sender && c.state == CallState::Active)
        else {
            self.events.push_back(
                Event::new("call.rekey_rejected")
                    .with("reason", "no such call")
                    .with_display("from", from),
            );
            return;
        };
        let wallet = &self.wallet;
        let shared_for = |y: &[u8]| -> Option<Vec<u8>> { wallet.dh().agree(y).ok() };
        match c.on_renewal(msg, shared_for, me) {
            Ok(()) => self.events.push_back(
                Event::new("call.rekey_accepted")
                    .with("peer", hex(&sender))
                    .with("epoch", c.epoch()),
            ),
            Err("replayed") => {}
            Err(reason) => self.events.push_back(
                Event::new("call.rekey_rejected")
                    .with("peer", hex(&sender))
                    .with("reason", reason),
            ),
        }
    }

    /// Retransmits what is due; fails over to the next SN after [`TRIES_PER_SN`] tries.
    pub fn handle_timeout(&mut self, now: Time) {
        let have_address = self.private.is_some();
        let mut out = Vec::new();
        let mut evs = Vec::new();
        for c in &mut self.calls {
            c.on_timeout(now, have_address, &mut out, &mut evs);
        }
        self.events.extend(evs);
        for (to, payload) in out {
            self.out.push_back(Transmit {
                src_ip: None,
                src_port: self.port,
                dst: to,
                payload,
            });
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
        if let Some(reg) = &self.reg
            && reg.backoff.next() <= now
        {
            let tries = reg.backoff.tries();
            if tries >= TRIES_PER_SN && tries.is_multiple_of(TRIES_PER_SN) {
                self.fail_over();
            }
            self.send_registration(now);
        }
        let due: Vec<u32> = self
            .queries
            .iter()
            .filter(|(_, q)| q.backoff.next() <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let tries = self.queries.get(&id).map_or(0, |q| q.backoff.tries());
            if tries >= MAX_QUERY_TRIES {
                if let Some(q) = self.queries.remove(&id) {
                    self.events.push_back(
                        Event::new("en.lookup_failed")
                            .with("request_id", id)
                            .with("peer", hex(&q.hash_addr)),
                    );
                    self.results.push_back((id, q.hash_addr, None));
                }
                continue;
            }
            if tries >= TRIES_PER_SN && tries.is_multiple_of(TRIES_PER_SN) {
                self.fail_over();
            }
            self.send_query(now, id);
        }
    }

    fn fail_over(&mut self) {
        if self.sns.len() > 1 {
            let from = self.super_node();
            self.sn_index = (self.sn_index + 1) % self.sns.len();
            self.events.push_back(
                Event::new("en.sn_failover")
                    .with("from", from.map(|s| s.to_string()))
                    .with("to", self.super_node().map(|s| s.to_string())),
            );
        }
    }

    /// Next retransmission time.
    pub fn poll_timeout(&self) -> Option<Time> {
        let reg = self.reg.as_ref().map(|r| r.backoff.next());
        let q = self.queries.values().map(|q| q.backoff.next()).min();
        let calls = self.calls.iter().filter_map(Call::poll_timeout).min();
        let again = self.not_found.values().filter_map(|e| e.0).min();
        [reg, q, calls, again].into_iter().flatten().min()
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
fn power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const SN: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 12), ports::SN);
    const ME: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 40);

    fn wallet(seed: u8, at: SocketAddrV4) -> Wallet {
        let mut w = Wallet::from_seed([seed; 32], &mut ChaCha8Rng::seed_from_u64(seed.into()));
        w.set_addresses(at, at);
        w
    }

    /// Answers every Query the EN sent with `answer(hash address)`; returns how many.
    fn answer_queries(
        en: &mut EndNode,
        now: Time,
        answer: &dyn Fn(HashAddr) -> Option<ToallTx>,
    ) -> usize {
        let sent: Vec<Transmit> = std::iter::from_fn(|| en.poll_transmit()).collect();
        let mut n = 0;
        for t in sent {
            if let Ok(Message::Query {
                request_id,
                hash_addr,
                ..
            }) = Message::parse(&t.payload)
            {
                let tx = answer(hash_addr);
                let reply = Message::Reply {
                    request_id,
                    hash_addr,
                    found: tx.is_some(),
                    height: 1,
                    confirmations: 1,
                    tx,
                    unconfirmed: None,
                };
                en.handle_datagram(now, SN, SocketAddrV4::new(ME, ports::EN), &reply.to_bytes());
                n += 1;
            }
        }
        n
    }

    #[test]
    fn a_session_request_flood_cannot_grow_the_call_list() {
        let me = SocketAddrV4::new(ME, ports::EN);
        let mut en = EndNode::new(wallet(1, me), ports::EN, 1, 440.0);
        en.on_address(Time::ZERO, ME, None, vec![SN]);
        let target = en.hash_addr();
        let spoofer = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 7), 4000);
        let request = |caller: HashAddr, i: u32| {
            let mut nonce = [0u8; 16];
            nonce[..4].copy_from_slice(&i.to_be_bytes());
            Message::SessionRequest {
                caller,
                callee: target,
                nonce,
                ssrc: i,
            }
            .to_bytes()
        };
        // 1000 requests from made-up callers: each is looked up, not found, and ends; the
        // list keeps at most MAX_CALLS, forgetting the oldest ended calls.
        for i in 0..1000u32 {
            let now = Time::from_millis(u64::from(i));
            let mut caller = [0u8; 32];
            caller[..4].copy_from_slice(&i.to_be_bytes());
            en.handle_datagram(now, spoofer, me, &request(caller, i));
            answer_queries(&mut en, now, &|_| None);
            assert!(en.calls().len() <= MAX_CALLS);
        }
        assert_eq!(en.calls().len(), MAX_CALLS);
        assert!(en.calls().iter().all(|c| c.state == CallState::Ended));
        assert_eq!(en.calls_refused, 0);
        // Requests naming a real, registered identity become live calls (the callee cannot
        // tell a spoofed request before the key confirmation): past MAX_CALLS live ones, new
        // requests are refused and counted, with events on the 1st, 10th, 100th refusal.
        let real = wallet(
            2,
            SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 41), ports::EN),
        );
        let real_tx = {
            let mut w = real;
            (w.hash_addr(), w.next_tx(0))
        };
        while en.poll_event().is_some() {}
        for i in 0..(MAX_CALLS as u32 + 150) {
            let now = Time::from_secs(10) + Time::from_millis(u64::from(i));
            en.handle_datagram(now, spoofer, me, &request(real_tx.0, 10_000 + i));
            let tx = real_tx.1.clone();
            answer_queries(&mut en, now, &move |_| Some(tx.clone()));
            assert!(en.calls().len() <= MAX_CALLS);
        }
        let live = en
            .calls()
            .iter()
            .filter(|c| c.state != CallState::Ended)
            .count();
        assert_eq!(live, MAX_CALLS);
        assert_eq!(en.calls_refused, 150);
        let reports = std::iter::from_fn(|| en.poll_event())
            .filter(|e| e.kind == "call.refused")
            .count();
        assert_eq!(reports, 3, "1st, 10th and 100th refusal");
    }

    fn reasons(en: &mut EndNode, kind: &str) -> Vec<String> {
        std::iter::from_fn(|| en.poll_event())
            .filter(|e| e.kind == kind)
            .map(|e| {
                e.get("reason")
                    .and_then(|r| r.as_str())
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }

    /// Attack 1, EN side: a Reply (from the SN's address: a lying SN, or a spoofer) whose Tx
    /// is forged, or belongs to another hash address than the one asked, is refused; the
    /// lookup stays pending, the call does not use the Tx, and the genuine Reply still works.
    #[test]
    fn a_reply_with_a_forged_or_foreign_tx_is_refused_and_the_call_waits_for_the_real_one() {
        let me = SocketAddrV4::new(ME, ports::EN);
        let mut en = EndNode::new(wallet(1, me), ports::EN, 1, 440.0);
        en.on_address(Time::ZERO, ME, None, vec![SN]);
        let peer_at = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 41), ports::EN);
        let mut peer = wallet(2, peer_at);
        let (peer_addr, peer_tx) = (peer.hash_addr(), peer.next_tx(0));
        let evil_at = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 66), 4444);
        let mut other = wallet(3, evil_at);
        let (other_addr, other_tx) = (other.hash_addr(), other.next_tx(0));
        while en.poll_transmit().is_some() {}
        en.call(Time::ZERO, peer_addr);
        let rid = std::iter::from_fn(|| en.poll_transmit())
            .find_map(|t| match Message::parse(&t.payload) {
                Ok(Message::Query {
                    request_id,
                    hash_addr,
                    ..
                }) if hash_addr == peer_addr => Some(request_id),
                _ => None,
            })
            .expect("the call queries the peer");
        while en.poll_event().is_some() {}
        let reply = |hash_addr: HashAddr, tx: ToallTx| Message::Reply {
            request_id: rid,
            hash_addr,
            found: true,
            height: 1,
            confirmations: 6,
            tx: Some(tx),
            unconfirmed: None,
        };

        // The peer's Tx moved to the attacker's endpoint, signature kept: bad signature.
        let mut moved = peer_tx.clone();
        moved.out.nat_ip = *evil_at.ip();
        moved.out.nat_port = evil_at.port();
        // The peer's Tx with one signature bit flipped.
        let mut bad_sig = peer_tx.clone();
        bad_sig.signature[0] ^= 1;
        // The attacker's own Tx relabelled with the peer's hash address (its own key kept):
        // the key does not hash to the address.
        let mut relabelled = other_tx.clone();
        relabelled.out.hash_addr = peer_addr;
        let forged = [
            (
                reply(peer_addr, moved),
                "Tx signature does not verify".to_owned(),
            ),
            (
                reply(peer_addr, bad_sig),
                "Tx signature does not verify".to_owned(),
            ),
            (
                reply(peer_addr, relabelled),
                "Tx hash address is not SHA-256 of its public key".to_owned(),
            ),
            // A valid Tx of another identity, in a Reply naming the peer.
            (
                reply(peer_addr, other_tx.clone()),
                "Tx belongs to another hash address".to_owned(),
            ),
            // A valid Reply about another identity, with our request id.
            (
                reply(other_addr, other_tx.clone()),
                "reply names another hash address".to_owned(),
            ),
        ];
        for (msg, why) in &forged {
            en.handle_datagram(Time::from_millis(10), SN, me, &msg.to_bytes());
            assert_eq!(reasons(&mut en, "en.reply_rejected"), vec![why.clone()]);
            assert!(en.poll_lookup().is_none(), "{why}: no lookup result");
            assert_eq!(
                en.calls()[0].state,
                CallState::LookingUp(rid),
                "{why}: still waiting"
            );
            assert!(en.calls()[0].peer_y().is_none(), "{why}: no key taken");
            assert!(en.poll_transmit().is_none(), "{why}: no Session Request");
        }
        // A forged Reply from anyone but the SN is not even looked at.
        let genuine = reply(peer_addr, peer_tx.clone()).to_bytes();
        en.handle_datagram(Time::from_millis(10), evil_at, me, &genuine);
        assert_eq!(reasons(&mut en, "en.unexpected").len(), 1);
        assert_eq!(en.calls()[0].state, CallState::LookingUp(rid));

        // The genuine Reply: the call goes on, to the registered endpoint, with the peer's Y.
        en.handle_datagram(Time::from_millis(20), SN, me, &genuine);
        let (id, addr, info) = en.poll_lookup().expect("lookup done");
        assert_eq!((id, addr), (rid, peer_addr));
        assert_eq!(info.map(|i| i.tx), Some(peer_tx.clone()));
        assert_eq!(en.calls()[0].state, CallState::Requesting);
        assert_eq!(en.calls()[0].peer_y(), Some(&peer_tx.out.y[..]));
        let sent: Vec<Transmit> = std::iter::from_fn(|| en.poll_transmit()).collect();
        assert!(sent.iter().any(|t| t.dst == peer_at
            && matches!(
                Message::parse(&t.payload),
                Ok(Message::SessionRequest { callee, .. }) if callee == peer_addr
            )));
        assert!(sent.iter().all(|t| t.dst != evil_at));
        // A late forgery for the finished lookup is ignored.
        en.handle_datagram(Time::from_millis(30), SN, me, &forged[0].0.to_bytes());
        assert!(reasons(&mut en, "en.reply_rejected").is_empty());
        assert_eq!(en.calls()[0].peer_addr, Some(peer_at));
    }

    /// Delivers everything `a` and `b` send, playing the SN (TxSubmit acknowledged and
    /// remembered, Query answered from what was submitted), until nothing is in flight.
    fn pump(a: &mut EndNode, b: &mut EndNode, now: Time, txs: &mut BTreeMap<HashAddr, ToallTx>) {
        for _ in 0..100 {
            let mut sent = Vec::new();
            for (i, en) in [&mut *a, &mut *b].into_iter().enumerate() {
                let ip = en.private.map_or(Ipv4Addr::UNSPECIFIED, |p| *p.ip());
                for t in std::iter::from_fn(|| en.poll_transmit()) {
                    sent.push((i, SocketAddrV4::new(ip, t.src_port), t));
                }
            }
            if sent.is_empty() {
                return;
            }
            for (i, from, t) in sent {
                let en = if i == 0 { &mut *a } else { &mut *b };
                if t.dst == SN {
                    let answer = match Message::parse(&t.payload) {
                        Ok(Message::TxSubmit { tx }) => {
                            let ack = Message::TxAck {
                                tx_id: tx.id(),
                                status: TxStatus::Accepted,
                                observed: from,
                            };
                            txs.insert(tx.out.hash_addr, tx);
                            ack
                        }
                        Ok(Message::Query {
                            request_id,
                            hash_addr,
                            ..
                        }) => {
                            let tx = txs.get(&hash_addr).cloned();
                            Message::Reply {
                                request_id,
                                hash_addr,
                                found: tx.is_some(),
                                height: 1,
                                confirmations: 1,
                                tx,
                                unconfirmed: None,
                            }
                        }
                        _ => continue,
                    };
                    en.handle_datagram(now, SN, from, &answer.to_bytes());
                    continue;
                }
                let to = if Some(t.dst) == a.private {
                    &mut *a
                } else if Some(t.dst) == b.private {
                    &mut *b
                } else {
                    continue;
                };
                to.handle_datagram(now, from, t.dst, &t.payload);
            }
        }
    }

    /// Runs both ENs' timers (audio frames) every 20 ms from `from` to `to`, delivering.
    fn run(
        a: &mut EndNode,
        b: &mut EndNode,
        from: Time,
        to: Time,
        txs: &mut BTreeMap<HashAddr, ToallTx>,
    ) {
        let mut now = from;
        while now <= to {
            a.handle_timeout(now);
            b.handle_timeout(now);
            pump(a, b, now, txs);
            now += Duration::from_millis(20);
        }
    }

    /// Attack 7 through the ENs: B renews its key during a call with A. A Key Renewal with a
    /// forged MAC, or carrying an attacker's Y under B's tag, is refused; the genuine one is
    /// accepted; replayed afterwards it changes nothing; audio keeps flowing under the keys
    /// both ends agree on.
    #[test]
    fn forged_and_replayed_key_renewals_are_refused_by_the_end_node() {
        let at_a = SocketAddrV4::new(ME, ports::EN);
        let at_b = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 41), ports::EN);
        let mut a = EndNode::new(wallet(1, at_a), ports::EN, 1, 440.0);
        let mut b = EndNode::new(wallet(2, at_b), ports::EN, 2, 660.0);
        let mut txs = BTreeMap::new();
        a.on_address(Time::ZERO, *at_a.ip(), None, vec![SN]);
        b.on_address(Time::ZERO, *at_b.ip(), None, vec![SN]);
        pump(&mut a, &mut b, Time::ZERO, &mut txs);
        a.call(Time::ZERO, b.hash_addr());
        pump(&mut a, &mut b, Time::ZERO, &mut txs);
        assert_eq!(a.calls()[0].state, CallState::Active);
        assert_eq!(b.calls()[0].state, CallState::Active);
        run(&mut a, &mut b, Time::ZERO, Time::from_millis(100), &mut txs);
        while a.poll_event().is_some() {}

        // B renews; hold its Key Renewal back.
        let t = Time::from_millis(110);
        b.rekey(t);
        let renewal = std::iter::from_fn(|| b.poll_transmit())
            .find(|x| {
                x.dst == at_a
                    && matches!(Message::parse(&x.payload), Ok(Message::KeyRenewal { .. }))
            })
            .expect("B sends a Key Renewal to A")
            .payload;
        let Ok(Message::KeyRenewal {
            sender,
            counter,
            y,
            mac,
        }) = Message::parse(&renewal)
        else {
            unreachable!("parsed above");
        };
        let mut rng = ChaCha8Rng::seed_from_u64(66);
        let evil = crate::dh::DhSecret::generate(&mut rng).public();
        let flipped = {
            let mut m = mac;
            m[15] ^= 0x80;
            m
        };
        let forgeries = [
            // B's message with one tag bit flipped.
            Message::KeyRenewal {
                sender,
                counter,
                y: y.clone(),
                mac: flipped,
            },
            // The paper's attack: the attacker's Y' under B's genuine tag.
            Message::KeyRenewal {
                sender,
                counter,
                y: evil.clone(),
                mac,
            },
            // The attacker's Y' with a far-ahead counter and a tag under a key it chose.
            Message::KeyRenewal {
                sender,
                counter: counter + 1000,
                y: evil,
                mac: [0x5a; 16],
            },
        ];
        let spoofed_from = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 66), 4444);
        for (k, f) in forgeries.iter().enumerate() {
            for from in [at_b, spoofed_from] {
                a.handle_datagram(t, from, at_a, &f.to_bytes());
                assert_eq!(
                    reasons(&mut a, "call.rekey_rejected"),
                    vec!["bad_mac".to_owned()],
                    "forgery {k}"
                );
                assert_eq!(a.calls()[0].epoch(), 0, "forgery {k}");
            }
        }
        assert_eq!(a.calls()[0].control_refused, 6);

        // The genuine renewal is still accepted (the forgeries did not burn its counter).
        a.handle_datagram(t, at_b, at_a, &renewal);
        assert_eq!(a.calls()[0].epoch(), 1);
        let accepted: Vec<Event> = std::iter::from_fn(|| a.poll_event()).collect();
        assert_eq!(
            accepted
                .iter()
                .filter(|e| e.kind == "call.rekey_accepted")
                .count(),
            1
        );
        // Replayed (from B's address or elsewhere): refused as a replay, nothing changes.
        for from in [at_b, spoofed_from] {
            a.handle_datagram(t, from, at_a, &renewal);
            let evs: Vec<Event> = std::iter::from_fn(|| a.poll_event()).collect();
            assert!(
                evs.iter().all(|e| e.kind != "call.rekey_accepted"),
                "{evs:?}"
            );
            assert_eq!(a.calls()[0].epoch(), 1);
        }
        // Audio goes on under the renewed keys, both ways, nothing refused.
        pump(&mut a, &mut b, t, &mut txs);
        run(
            &mut a,
            &mut b,
            Time::from_millis(120),
            Time::from_millis(400),
            &mut txs,
        );
        assert_eq!(b.calls()[0].epoch(), 1, "B completed the renewal");
        for c in [&a.calls()[0], &b.calls()[0]] {
            assert!(
                c.media.media_refused.is_empty(),
                "{:?}",
                c.media.media_refused
            );
            assert!(c.media.rx_stats.summary().received >= 19);
        }
        // A replay after the switch still changes nothing.
        a.handle_datagram(Time::from_millis(400), at_b, at_a, &renewal);
        assert_eq!(a.calls()[0].epoch(), 1);
        run(
            &mut a,
            &mut b,
            Time::from_millis(420),
            Time::from_millis(500),
            &mut txs,
        );
        assert!(a.calls()[0].media.media_refused.is_empty());
        assert!(b.calls()[0].media.media_refused.is_empty());
    }
}
