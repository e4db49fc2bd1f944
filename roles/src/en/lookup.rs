//! The EN's lookup client (paper, Figure 8, first step): one Query per peer at the nearest
//! SN, retransmitted with backoff. A Reply is used only if it comes from the SN asked, its Tx
//! verifies, belongs to the hash address asked for, and is proven in a block of the EN's
//! best header chain (`light`). Two answers cannot be proven, so they are checked with a
//! second SN of the DHCP list when there is one: "not found", and a Tx more than
//! [`FRESH_BLOCKS`] blocks old (the newer of the two proven Txs wins).

use super::events::EnEvent;
use super::light::{FRESH_BLOCKS, Proven};
use super::registration::TRIES_PER_SN;
use super::{EndNode, Purpose};
use crate::Time;
use crate::session::retransmit::{Backoff, RTO_INITIAL, RTO_MAX};
use crate::util::hex;
use crate::wallet::verify_tx;
use crate::work::Op;
use binfm_stack::wire::binfm::{Message, TxProof};
use binfm_stack::wire::toall::{HashAddr, ToallTx};
use rand::RngExt;
use std::net::SocketAddrV4;

/// Queries in flight at most (each is bounded in tries too).
pub const MAX_PENDING_QUERIES: usize = 64;
/// Tries of one query before giving up.
pub const MAX_QUERY_TRIES: u32 = 6;

/// What a successful lookup returned, after the EN checked it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo {
    /// The peer's registered Tx (signature and address binding verified).
    pub tx: ToallTx,
    /// Block height of the Tx (in the EN's header chain).
    pub height: u64,
    /// Confirmations in the EN's header chain.
    pub confirmations: u32,
    /// True when the Tx came from the SN's mempool (not yet in a block, not proven).
    pub unconfirmed: bool,
}

/// A Query waiting for its Reply.
#[derive(Debug)]
pub(super) struct PendingQuery {
    pub(super) hash_addr: HashAddr,
    pub(super) first_sent: Time,
    pub(super) backoff: Backoff,
    /// The SN it was last sent to: only its Reply counts.
    pub(super) sn: SocketAddrV4,
    pub(super) purpose: Purpose,
    /// Index in the DHCP list of the SN to ask (moves on failover).
    pub(super) sn_index: usize,
    /// The Reply's block was not in our header chain: asked again once headers arrive.
    pub(super) waiting_headers: bool,
}

impl EndNode {
    /// Looks up a peer's hash address at the nearest SN; the answer comes as an event and
    /// through [`EndNode::poll_lookup`]. Returns the request id.
    pub fn lookup(&mut self, now: Time, hash_addr: HashAddr) -> Option<u32> {
        self.query(now, hash_addr, Purpose::Lookup, self.sn_index)
    }

    /// Sends a Query of `purpose` to the SN at `sn_index` of the DHCP list.
    pub(super) fn query(
        &mut self,
        now: Time,
        hash_addr: HashAddr,
        purpose: Purpose,
        sn_index: usize,
    ) -> Option<u32> {
        if self.queries.len() >= MAX_PENDING_QUERIES {
            self.events.push_back(
                EnEvent::LookupRefused {
                    reason: "too many pending queries",
                }
                .into(),
            );
            return None;
        }
        // Unpredictable (32 bits from the ChaCha20 generator), so an off-path attacker cannot
        // answer a Query it did not see; never 0 and never one still pending.
        let id = loop {
            let id: u32 = self.rng.random();
            if id != 0 && !self.queries.contains_key(&id) {
                break id;
            }
        };
        let sn = self
            .sns
            .get(sn_index)
            .copied()
            .unwrap_or(SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0));
        self.queries.insert(
            id,
            PendingQuery {
                hash_addr,
                first_sent: now,
                backoff: Backoff::new(RTO_INITIAL, RTO_MAX, now),
                sn,
                purpose,
                sn_index,
                waiting_headers: false,
            },
        );
        self.send_query(now, id);
        Some(id)
    }

    pub(super) fn send_query(&mut self, now: Time, id: u32) {
        let want_unconfirmed = self.want_unconfirmed;
        let Some(q) = self.queries.get_mut(&id) else {
            return;
        };
        let Some(sn) = self.sns.get(q.sn_index).copied() else {
            return;
        };
        q.sn = sn;
        q.backoff.on_send(now);
        let payload = Message::Query {
            request_id: id,
            hash_addr: q.hash_addr,
            want_unconfirmed: want_unconfirmed || q.purpose == Purpose::Resume,
        }
        .to_bytes();
        self.events.push_back(
            EnEvent::QuerySent {
                request_id: id,
                r#try: q.backoff.tries(),
                peer: hex(&q.hash_addr),
                sn,
            }
            .into(),
        );
        self.send(sn, payload);
    }

    /// Takes the next finished lookup: (request id, wanted address, result or `None` if not found).
    pub fn poll_lookup(&mut self) -> Option<(u32, HashAddr, Option<PeerInfo>)> {
        self.results.pop_front()
    }

    fn reject_reply(&mut self, request_id: u32, reason: impl Into<String>) {
        self.events.push_back(
            EnEvent::ReplyRejected {
                request_id,
                reason: reason.into(),
            }
            .into(),
        );
    }

    /// The index of another SN than `index` in the DHCP list, if there is one.
    fn other_sn(&self, index: usize) -> Option<usize> {
        (self.sns.len() > 1).then(|| (index + 1) % self.sns.len())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_reply(
        &mut self,
        now: Time,
        from: SocketAddrV4,
        request_id: u32,
        hash_addr: HashAddr,
        found: bool,
        tx: Option<ToallTx>,
        unconfirmed: Option<ToallTx>,
        proof: Option<TxProof>,
    ) {
        let Some(q) = self.queries.get(&request_id) else {
            return;
        };
        if q.sn != from {
            return self.reject_reply(request_id, "reply from another SN than the one asked");
        }
        if q.hash_addr != hash_addr {
            return self.reject_reply(request_id, "reply names another hash address");
        }
        let purpose = q.purpose.clone();
        let sn_index = q.sn_index;
        let rtt_ns = u64::try_from(now.saturating_sub(q.first_sent).as_nanos()).unwrap_or(u64::MAX);
        let own = purpose == Purpose::Resume;
        let (chosen, is_unconfirmed) = match (tx, unconfirmed) {
            (_, Some(u)) if self.want_unconfirmed || own => (Some(u), true),
            (t, _) => (t, false),
        };
        let mut result = None;
        if let (true, Some(tx)) = (found, chosen) {
            if tx.out.hash_addr != hash_addr {
                return self.reject_reply(request_id, "Tx belongs to another hash address");
            }
            self.work.add(Op::Verify);
            if let Err(e) = verify_tx(&tx) {
                return self.reject_reply(request_id, e.to_string());
            }
            if own {
                // Our own signature proves the Tx is ours: no block proof needed to resume.
                self.queries.remove(&request_id);
                return self.resume_from(now, from, Some(tx.out.seq));
            }
            let (height, confirmations) = if is_unconfirmed {
                // Opt-in (`want_unconfirmed`): a pending Tx has no block, so no proof.
                (0, 0)
            } else {
                let Some(p) = &proof else {
                    return self.reject_reply(request_id, "confirmed Tx without a proof");
                };
                match self.check_proof(now, from, &tx, p) {
                    Err(e) => return self.reject_reply(request_id, e),
                    Ok(Proven::Syncing) => {
                        if let Some(q) = self.queries.get_mut(&request_id) {
                            q.waiting_headers = true;
                        }
                        return self.reject_reply(
                            request_id,
                            "block not in our header chain yet: fetching headers",
                        );
                    }
                    Ok(Proven::InBlock { height, age }) => {
                        if age > FRESH_BLOCKS
                            && purpose == Purpose::Lookup
                            && let Some(other) = self.other_sn(sn_index)
                        {
                            // Old enough that a newer registration may be hidden: ask a
                            // second SN before using it.
                            let info = PeerInfo {
                                tx,
                                height,
                                confirmations: u32::try_from(age + 1).unwrap_or(u32::MAX),
                                unconfirmed: false,
                            };
                            return self.confirm_elsewhere(now, request_id, Some(info), other, age);
                        }
                        (height, u32::try_from(age + 1).unwrap_or(u32::MAX))
                    }
                }
            };
            result = Some(PeerInfo {
                tx,
                height,
                confirmations,
                unconfirmed: is_unconfirmed,
            });
        }
        match purpose {
            Purpose::Resume => {
                self.queries.remove(&request_id);
                self.resume_from(now, from, None);
            }
            Purpose::Lookup if result.is_none() => {
                // "Not found" cannot be proven: ask a second SN before believing it.
                if let Some(other) = self.other_sn(sn_index) {
                    return self.confirm_elsewhere(now, request_id, None, other, 0);
                }
                self.finish_lookup(now, request_id, hash_addr, None, rtt_ns);
            }
            Purpose::Lookup => self.finish_lookup(now, request_id, hash_addr, result, rtt_ns),
            Purpose::Confirm { first } => {
                // The newer of the two proven registrations; "not found" from both is not found.
                let chosen = match (first, result) {
                    (Some(a), Some(b)) => {
                        if b.tx.out.seq > a.tx.out.seq {
                            self.events.push_back(
                                EnEvent::StaleReply {
                                    peer: hex(&hash_addr),
                                    first_seq: a.tx.out.seq,
                                    second_seq: b.tx.out.seq,
                                    second_sn: from,
                                }
                                .into(),
                            );
                            Some(b)
                        } else {
                            Some(a)
                        }
                    }
                    (a, b) => a.or(b),
                };
                self.finish_lookup(now, request_id, hash_addr, chosen, rtt_ns);
            }
        }
    }

    /// Moves the lookup `request_id` to a second SN (`other`), keeping what the first proved.
    fn confirm_elsewhere(
        &mut self,
        now: Time,
        request_id: u32,
        first: Option<PeerInfo>,
        other: usize,
        age_blocks: u64,
    ) {
        let Some(q) = self.queries.get_mut(&request_id) else {
            return;
        };
        q.purpose = Purpose::Confirm { first };
        q.sn_index = other;
        q.backoff = Backoff::new(RTO_INITIAL, RTO_MAX, now);
        let peer = hex(&q.hash_addr);
        let sn = self.sns.get(other).copied();
        if let Some(sn) = sn {
            self.events.push_back(
                EnEvent::LookupConfirm {
                    request_id,
                    peer,
                    sn,
                    age_blocks,
                }
                .into(),
            );
        }
        self.send_query(now, request_id);
    }

    /// Ends the lookup `request_id` with `result` (`None`: not found).
    fn finish_lookup(
        &mut self,
        now: Time,
        request_id: u32,
        hash_addr: HashAddr,
        result: Option<PeerInfo>,
        rtt_ns: u64,
    ) {
        match &result {
            Some(info) => self.events.push_back(
                EnEvent::LookupOk {
                    request_id,
                    peer: hex(&hash_addr),
                    seq: info.tx.out.seq,
                    private: SocketAddrV4::new(info.tx.out.private_ip, info.tx.out.private_port),
                    nat: SocketAddrV4::new(info.tx.out.nat_ip, info.tx.out.nat_port),
                    height: info.height,
                    confirmations: info.confirmations,
                    unconfirmed: info.unconfirmed,
                    rtt_ns,
                }
                .into(),
            ),
            None => self.events.push_back(
                EnEvent::LookupNotFound {
                    request_id,
                    peer: hex(&hash_addr),
                    rtt_ns,
                }
                .into(),
            ),
        }
        self.queries.remove(&request_id);
        self.continue_call(now, request_id, result.as_ref());
        self.results.push_back((request_id, hash_addr, result));
    }

    /// Retransmits the queries due; gives up after [`MAX_QUERY_TRIES`] tries (a Confirm then
    /// falls back on what the first SN proved).
    pub(super) fn queries_due(&mut self, now: Time) {
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
                    match q.purpose {
                        Purpose::Resume => self.resume_from(now, q.sn, None),
                        // The second SN never answered: what the first proved stands.
                        Purpose::Confirm { first } => {
                            let rtt_ns = u64::try_from(now.saturating_sub(q.first_sent).as_nanos())
                                .unwrap_or(u64::MAX);
                            self.finish_lookup(now, id, q.hash_addr, first, rtt_ns);
                        }
                        Purpose::Lookup => {
                            self.events.push_back(
                                EnEvent::LookupFailed {
                                    request_id: id,
                                    peer: hex(&q.hash_addr),
                                }
                                .into(),
                            );
                            self.results.push_back((id, q.hash_addr, None));
                            self.lookup_gave_up(id);
                        }
                    }
                }
                continue;
            }
            // A second opinion (Confirm) moves on after one unanswered try: the call waits
            // for it, and a down SN must not hold it up for a whole retransmission series.
            let per_sn = match self.queries.get(&id).map(|q| &q.purpose) {
                Some(Purpose::Confirm { .. }) => 1,
                _ => TRIES_PER_SN,
            };
            if tries >= per_sn
                && tries.is_multiple_of(per_sn)
                && let Some(other) = self
                    .queries
                    .get(&id)
                    .and_then(|q| self.other_sn(q.sn_index))
            {
                if let Some(q) = self.queries.get_mut(&id) {
                    q.sn_index = other;
                }
                self.fail_over();
            }
            self.send_query(now, id);
        }
    }
}
