//! The EN's lookup client (paper, Figure 8, first step): one Query per peer at the nearest
//! SN, retransmitted with backoff; a Reply is used only if its Tx verifies and belongs to
//! the hash address asked for.

use super::EndNode;
use super::registration::TRIES_PER_SN;
use crate::session::retransmit::{Backoff, RTO_INITIAL, RTO_MAX};
use crate::util::hex;
use crate::wallet::verify_tx;
use crate::{Event, Time};
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
            Event::new("en.query_sent")
                .with("request_id", id)
                .with("try", q.backoff.tries())
                .with("peer", hex(&q.hash_addr))
                .with_display("sn", sn),
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
}
