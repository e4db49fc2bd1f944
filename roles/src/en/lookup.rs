//! The EN's lookup client (paper, Figure 8, first step): one Query per peer at the nearest
//! SN, retransmitted with backoff; a Reply is used only if its Tx verifies and belongs to
//! the hash address asked for.

use super::EndNode;
use super::events::EnEvent;
use super::registration::TRIES_PER_SN;
use crate::Time;
use crate::session::retransmit::{Backoff, RTO_INITIAL, RTO_MAX};
use crate::util::hex;
use crate::wallet::verify_tx;
use binfm_stack::wire::binfm::Message;
use binfm_stack::wire::toall::{HashAddr, ToallTx};
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
    /// Block height of the Tx.
    pub height: u64,
    /// Confirmations at the SN.
    pub confirmations: u32,
    /// True when the Tx came from the SN's mempool (not yet in a block).
    pub unconfirmed: bool,
}

/// A Query waiting for its Reply.
#[derive(Debug)]
pub(super) struct PendingQuery {
    pub(super) hash_addr: HashAddr,
    pub(super) first_sent: Time,
    pub(super) backoff: Backoff,
}

impl EndNode {
    /// Looks up a peer's hash address at the nearest SN; the answer comes as an event and
    /// through [`EndNode::poll_lookup`]. Returns the request id.
    pub fn lookup(&mut self, now: Time, hash_addr: HashAddr) -> Option<u32> {
        if self.queries.len() >= MAX_PENDING_QUERIES {
            self.events.push_back(
                EnEvent::LookupRefused {
                    reason: "too many pending queries",
                }
                .into(),
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

    pub(super) fn send_query(&mut self, now: Time, id: u32) {
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

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_reply(
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
                EnEvent::ReplyRejected {
                    request_id,
                    reason: "reply names another hash address".to_owned(),
                }
                .into(),
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
                        EnEvent::ReplyRejected {
                            request_id,
                            reason: "Tx belongs to another hash address".to_owned(),
                        }
                        .into(),
                    );
                    return;
                }
                if let Err(e) = verify_tx(&tx) {
                    self.events.push_back(
                        EnEvent::ReplyRejected {
                            request_id,
                            reason: e.to_string(),
                        }
                        .into(),
                    );
                    return;
                }
                self.events.push_back(
                    EnEvent::LookupOk {
                        request_id,
                        peer: hex(&hash_addr),
                        seq: tx.out.seq,
                        private: SocketAddrV4::new(tx.out.private_ip, tx.out.private_port),
                        nat: SocketAddrV4::new(tx.out.nat_ip, tx.out.nat_port),
                        height,
                        confirmations,
                        unconfirmed: is_unconfirmed,
                        rtt_ns,
                    }
                    .into(),
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
                    EnEvent::LookupNotFound {
                        request_id,
                        peer: hex(&hash_addr),
                        rtt_ns,
                    }
                    .into(),
                );
                None
            }
        };
        self.queries.remove(&request_id);
        self.continue_call(now, request_id, result.as_ref());
        self.results.push_back((request_id, hash_addr, result));
    }

    /// Retransmits the queries due; gives up after [`MAX_QUERY_TRIES`] tries.
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
                    self.events.push_back(
                        EnEvent::LookupFailed {
                            request_id: id,
                            peer: hex(&q.hash_addr),
                        }
                        .into(),
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
}
